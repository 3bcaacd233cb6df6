//! The interface layer: neighbours (ARP) and routes.

pub mod arp;
pub mod route;

pub use arp::{ArpCache, ArpConfig, SharedNeighbors};
pub use route::{Route, RouteTable};
