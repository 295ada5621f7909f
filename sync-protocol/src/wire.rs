//! The automerge-repo v1 wire protocol envelope (owned by the server team; see README.md).
