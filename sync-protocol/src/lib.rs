//! Canopy protocol: the Feature document schema, the wire protocol envelope
//! and the ephemeral message types shared by the server, the sidecar and
//! third-party clients.

pub mod wire;
