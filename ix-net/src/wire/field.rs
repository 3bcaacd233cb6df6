//! Named byte ranges of header fields and big-endian reads and writes over
//! them, shared by every view in `wire`.

use std::net::Ipv4Addr;

/// The byte range of one header field.
pub(crate) type Field = core::ops::Range<usize>;

/// Reads the big-endian `u16` at the start of `field`.
#[inline]
pub(crate) fn read_u16(data: &[u8], field: Field) -> u16 {
    let bytes = &data[field];
    u16::from_be_bytes([bytes[0], bytes[1]])
}

/// Reads the big-endian `u32` at the start of `field`.
#[inline]
pub(crate) fn read_u32(data: &[u8], field: Field) -> u32 {
    let bytes = &data[field];
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// Reads the IPv4 address stored in `field`.
#[inline]
pub(crate) fn read_ipv4(data: &[u8], field: Field) -> Ipv4Addr {
    Ipv4Addr::from(read_u32(data, field))
}

/// Writes `value` big-endian into `field`.
#[inline]
pub(crate) fn write_u16(data: &mut [u8], field: Field, value: u16) {
    data[field].copy_from_slice(&value.to_be_bytes());
}

/// Writes `value` big-endian into `field`.
#[inline]
pub(crate) fn write_u32(data: &mut [u8], field: Field, value: u32) {
    data[field].copy_from_slice(&value.to_be_bytes());
}
