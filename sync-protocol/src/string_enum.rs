//! `string_enum!`: the closed-but-extensible string enums of the protocol.
//!
//! Statuses and kinds travel as lowercase strings. A newer peer may write a
//! value this build has never heard of; an older reader must keep it
//! verbatim ([`Unknown`](crate::feature::QueueStatus::Unknown)) so that
//! reading and writing back a document or message does not clobber it.

/// Declares an enum of known string values plus `Unknown(String)`, with
/// `as_str`, lossless parsing (`From<&str>`, `From<String>`), `Display`,
/// `Default` and serde as a plain string.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $s:literal, )+
        }
        default = $default:ident;
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value this build does not know, kept verbatim so that it
            /// round-trips. Parsing never puts a known value here.
            Unknown(String),
        }

        impl $name {
            /// Every value this build knows.
            pub const KNOWN: &'static [$name] = &[$($name::$variant),+];

            /// The string stored in documents and messages.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $s, )+
                    Self::Unknown(s) => s,
                }
            }

            /// Whether this is a value this build knows.
            pub fn is_known(&self) -> bool {
                !matches!(self, Self::Unknown(_))
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::$default
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s {
                    $( $s => Self::$variant, )+
                    other => Self::Unknown(other.to_owned()),
                }
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                match s.as_str() {
                    $( $s => Self::$variant, )+
                    _ => Self::Unknown(s),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                String::deserialize(deserializer).map(Self::from)
            }
        }
    };
}

pub(crate) use string_enum;
