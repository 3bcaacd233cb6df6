//! Sans-IO TCP/IP for the IX dataplane: frames and `now` in, frames and socket
//! events out. No threads, no clock, no futures.
#![deny(unsafe_code)]

pub mod tcp;
pub mod timer;
pub mod wire;
