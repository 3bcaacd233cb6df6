//! Input decoding shared by the fuzz targets.

use std::net::Ipv4Addr;

/// Splits fuzz input into a source and a destination IPv4 address (its
/// first 8 bytes) and the transport segment after them; `None` if the input
/// is shorter than 8 bytes.
pub fn split_addresses(data: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, &[u8])> {
    let (addresses, segment) = data.split_first_chunk::<8>()?;
    let src = Ipv4Addr::new(addresses[0], addresses[1], addresses[2], addresses[3]);
    let dst = Ipv4Addr::new(addresses[4], addresses[5], addresses[6], addresses[7]);
    Some((src, dst, segment))
}
