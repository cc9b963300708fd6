//! One module per optional part: its command-line options and how it is built from them.
//! Each is compiled only with its feature.

#[cfg(feature = "poll")]
pub(crate) mod poll;
#[cfg(feature = "redis")]
pub(crate) mod redis;
#[cfg(feature = "sse")]
pub(crate) mod sse;
#[cfg(feature = "ws")]
pub(crate) mod ws;
