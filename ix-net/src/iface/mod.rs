//! The interface layer: neighbours (ARP) and routes.

pub mod arp;
pub mod route;

pub use arp::{ArpCache, ArpConfig};
pub use route::{Route, RouteTable};
