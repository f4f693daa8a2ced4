//! The HTTP/1 codec: bytes in, values out. Request and response heads ([`head`]), body framing
//! and its progress ([`body`]), chunked bodies read strictly and written normalised
//! ([`chunked`]), and the PROXY protocol header that may precede a connection's first request
//! ([`proxy_protocol`]).
//!
//! Pure, in the way hyper's `role.rs` and `decode.rs` are: no sockets, no runtime, no clock, so
//! every rule here is testable as bytes in and values out, and the engine, the load tool and the
//! fuzz target all read HTTP/1 with the same code.
//!
//! **May import:** nothing of tether's. Everything above it may import it.

pub mod body;
pub mod chunked;
pub mod head;
pub mod proxy_protocol;
