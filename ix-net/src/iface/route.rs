//! The static route table: the directly attached subnet, optional routes, and a
//! default gateway; longest prefix wins.

use std::net::Ipv4Addr;

/// One route: destinations in `network/prefix_len` go to `gateway`, or are on
/// the link when `gateway` is `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Network address.
    pub network: Ipv4Addr,
    /// Prefix length, 0 to 32.
    pub prefix_len: u8,
    /// Next hop, or `None` for on-link destinations.
    pub gateway: Option<Ipv4Addr>,
}

impl Route {
    fn mask(&self) -> u32 {
        match self.prefix_len {
            0 => 0,
            n => u32::MAX << (32 - u32::from(n.min(32))),
        }
    }

    fn contains(&self, dst: Ipv4Addr) -> bool {
        u32::from(dst) & self.mask() == u32::from(self.network) & self.mask()
    }
}

/// Routes, looked up by longest prefix.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route (kept sorted longest prefix first).
    pub fn add(&mut self, route: Route) {
        self.routes.push(route);
        self.routes.sort_by_key(|r| std::cmp::Reverse(r.prefix_len));
    }

    /// The neighbour a datagram to `dst` goes to: `dst` itself when on-link, the
    /// route's gateway otherwise; `None` when no route matches.
    pub fn next_hop(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        self.routes.iter().find(|r| r.contains(dst)).map(|r| r.gateway.unwrap_or(dst))
    }

    /// Whether `dst` is the directed broadcast address of an on-link subnet.
    pub fn is_subnet_broadcast(&self, dst: Ipv4Addr) -> bool {
        self.routes.iter().any(|r| {
            r.gateway.is_none() && r.prefix_len < 31 && r.contains(dst) && u32::from(dst) | r.mask() == u32::MAX
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins_and_default_catches_the_rest() {
        let mut t = RouteTable::new();
        t.add(Route { network: Ipv4Addr::new(10, 0, 0, 0), prefix_len: 24, gateway: None });
        t.add(Route { network: Ipv4Addr::UNSPECIFIED, prefix_len: 0, gateway: Some(Ipv4Addr::new(10, 0, 0, 1)) });
        t.add(Route {
            network: Ipv4Addr::new(192, 168, 0, 0),
            prefix_len: 16,
            gateway: Some(Ipv4Addr::new(10, 0, 0, 254)),
        });
        assert_eq!(t.next_hop(Ipv4Addr::new(10, 0, 0, 7)), Some(Ipv4Addr::new(10, 0, 0, 7)));
        assert_eq!(t.next_hop(Ipv4Addr::new(192, 168, 3, 4)), Some(Ipv4Addr::new(10, 0, 0, 254)));
        assert_eq!(t.next_hop(Ipv4Addr::new(8, 8, 8, 8)), Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert!(t.is_subnet_broadcast(Ipv4Addr::new(10, 0, 0, 255)));
        assert!(!t.is_subnet_broadcast(Ipv4Addr::new(10, 0, 0, 254)));
    }

    #[test]
    fn no_route_without_a_default() {
        let mut t = RouteTable::new();
        t.add(Route { network: Ipv4Addr::new(10, 0, 0, 0), prefix_len: 8, gateway: None });
        assert_eq!(t.next_hop(Ipv4Addr::new(11, 0, 0, 1)), None);
    }
}
