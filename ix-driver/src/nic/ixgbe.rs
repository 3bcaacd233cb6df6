//! The Intel 82599 (`ixgbe`) register map and start-up sequence, written to
//! its datasheet (no 82599 was at hand: see docs/backends.md): reset, link by
//! auto-negotiation restart, own-address and broadcast filters, RSS, queues and
//! counters.

use std::time::Duration;

use crate::rss::RedirectionTable;

use super::family::{
    Family, HardwareCounters, MRQC_HASH_IPV4_TCP_UDP, QUEUE_STRIDE, QueueLayout, clear_multicast_table, program_rss,
    read_split_counter, station_address,
};
use super::regs::{Registers, poll_register};

const CTRL: u32 = 0x0000;
/// CTRL: device reset and link reset, set together for a software reset.
const CTRL_RST_MASK: u32 = (1 << 26) | (1 << 3);
const CTRL_EXT: u32 = 0x0018;
const CTRL_EXT_NS_DIS: u32 = 1 << 16;
const EIMC: u32 = 0x0888;
const EIMC_ALL: u32 = 0x7FFF_FFFF;
const EEC: u32 = 0x10010;
const EEC_ARD: u32 = 1 << 9;
const RDRXCTL: u32 = 0x2F00;
const RDRXCTL_CRCSTRIP: u32 = 1 << 1;
const RDRXCTL_DMAIDONE: u32 = 1 << 3;
const AUTOC: u32 = 0x42A0;
const AUTOC_LMS_MASK: u32 = 0b111 << 13;
const AUTOC_LMS_10G_SERIAL: u32 = 0b011 << 13;
const AUTOC_10G_PMA_PMD_MASK: u32 = 0b11 << 7;
const AUTOC_10G_XAUI: u32 = 0b00 << 7;
const AUTOC_RESTART_AN: u32 = 1 << 12;
const LINKS: u32 = 0x42A4;
const LINKS_UP: u32 = 1 << 30;
const RXCTRL: u32 = 0x3000;
const RXCTRL_RXEN: u32 = 1 << 0;
const HLREG0: u32 = 0x4240;
const HLREG0_TXCRCEN: u32 = 1 << 0;
const HLREG0_RXCRCSTRP: u32 = 1 << 1;
const HLREG0_TXPADEN: u32 = 1 << 10;
const FCTRL: u32 = 0x5080;
const FCTRL_MPE: u32 = 1 << 8;
const FCTRL_UPE: u32 = 1 << 9;
const FCTRL_BAM: u32 = 1 << 10;
const DMATXCTL: u32 = 0x4A80;
const DMATXCTL_TE: u32 = 1 << 0;
const RTTDCS: u32 = 0x4900;
const RTTDCS_ARBDIS: u32 = 1 << 6;
const MTQC: u32 = 0x8120;
const DTXMXSZRQ: u32 = 0x8100;
const RAL0: u32 = 0xA200;
const RAH0: u32 = 0xA204;
/// Missed packet counters, one per packet buffer (eight).
const MPC_BASE: u32 = 0x3FA0;
const MPC_REGISTERS: u32 = 8;
/// MRQC: RSS only.
const MRQC_RSS: u32 = 0b0001;
const RX_QUEUE_BASE: u32 = 0x1000;
const TX_QUEUE_BASE: u32 = 0x6000;
const DCA_RXCTRL: u32 = 0x0C;
const DCA_RXCTRL_DESC_RRO_EN: u32 = 1 << 12;
const SRRCTL: u32 = 0x14;
const SRRCTL_DROP_EN: u32 = 1 << 28;
/// Per-queue receive drop counters, 0x40 apart from here.
const QPRDC_BASE: u32 = 0x1430;
/// Per-statistics-set counters (sixteen sets): received packets and octets
/// (low, high) 0x40 apart, transmitted packets 0x40 apart, transmitted octets
/// (low, high) 8 apart. Clear on read.
const QPRC_BASE: u32 = 0x1030;
const QBRC_L_BASE: u32 = 0x1034;
const QBRC_H_BASE: u32 = 0x1038;
const QPTC_BASE: u32 = 0x6030;
const QBTC_L_BASE: u32 = 0x8700;
const QBTC_H_BASE: u32 = 0x8704;
/// Receive and transmit queue-to-statistics mapping: one register per four
/// queues, a byte each naming the statistics set.
const RQSMR_BASE: u32 = 0x2300;
const TQSM_BASE: u32 = 0x8600;
/// Statistics sets the device has.
const STATISTICS_SETS: u16 = 16;
/// TXDCTL thresholds: prefetch 36, host 8, write-back 4 descriptors.
const TXDCTL_THRESHOLDS: u32 = 36 | (8 << 8) | (4 << 16);
const TXDCTL_THRESHOLDS_MASK: u32 = 0x7F | (0x7F << 8) | (0x7F << 16);

const RESET_TIMEOUT: Duration = Duration::from_millis(100);
/// The datasheet asks for at least 10 ms between a reset and the next access.
const RESET_SETTLE: Duration = Duration::from_millis(10);

/// The 82599.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ixgbe;

impl Family for Ixgbe {
    fn name(&self) -> &'static str {
        "ixgbe"
    }

    fn max_queues(&self) -> u16 {
        // RSS spreads over sixteen queues (a redirection entry names 0..15).
        16
    }

    fn reset(&self, regs: &dyn Registers) -> Result<(), String> {
        regs.write(EIMC, EIMC_ALL);
        regs.set_bits(CTRL, CTRL_RST_MASK);
        std::thread::sleep(RESET_SETTLE);
        if !poll_register(regs, CTRL, RESET_TIMEOUT, |v| v & CTRL_RST_MASK == 0).1 {
            return Err("CTRL.RST did not clear after a reset".into());
        }
        regs.write(EIMC, EIMC_ALL);
        if !poll_register(regs, EEC, RESET_TIMEOUT, |v| v & EEC_ARD != 0).1 {
            return Err("the EEPROM was not read after reset (EEC.ARD)".into());
        }
        if !poll_register(regs, RDRXCTL, RESET_TIMEOUT, |v| v & RDRXCTL_DMAIDONE != 0).1 {
            return Err("receive DMA did not initialise (RDRXCTL.DMAIDONE)".into());
        }
        Ok(())
    }

    fn start_link(&self, regs: &dyn Registers) -> Result<(), String> {
        let autoc = regs.read(AUTOC);
        let autoc = (autoc & !AUTOC_LMS_MASK) | AUTOC_LMS_10G_SERIAL;
        let autoc = (autoc & !AUTOC_10G_PMA_PMD_MASK) | AUTOC_10G_XAUI;
        regs.write(AUTOC, autoc | AUTOC_RESTART_AN);
        Ok(())
    }

    fn link_up(&self, regs: &dyn Registers) -> bool {
        regs.read(LINKS) & LINKS_UP != 0
    }

    fn mac_address(&self, regs: &dyn Registers) -> [u8; 6] {
        station_address(regs, RAL0, RAH0)
    }

    fn configure(&self, regs: &dyn Registers, key: &[u8; 40], table: &RedirectionTable) {
        // Receive off while filters change.
        regs.clear_bits(RXCTRL, RXCTRL_RXEN);
        regs.set_bits(HLREG0, HLREG0_RXCRCSTRP | HLREG0_TXCRCEN | HLREG0_TXPADEN);
        regs.set_bits(RDRXCTL, RDRXCTL_CRCSTRIP);
        let fctrl = (regs.read(FCTRL) & !(FCTRL_UPE | FCTRL_MPE)) | FCTRL_BAM;
        regs.write(FCTRL, fctrl);
        clear_multicast_table(regs);
        program_rss(regs, key, table, MRQC_RSS | MRQC_HASH_IPV4_TCP_UDP);
        // No snooping disabled: descriptor write-backs stay coherent.
        regs.set_bits(CTRL_EXT, CTRL_EXT_NS_DIS);
        // Transmit: one traffic class, no limit on DMA requests, DMA on.
        regs.set_bits(RTTDCS, RTTDCS_ARBDIS);
        regs.write(MTQC, 0);
        regs.clear_bits(RTTDCS, RTTDCS_ARBDIS);
        regs.write(DTXMXSZRQ, 0xFFFF);
        regs.set_bits(DMATXCTL, DMATXCTL_TE);
        regs.set_bits(RXCTRL, RXCTRL_RXEN);
    }

    fn queue_layout(&self) -> QueueLayout {
        QueueLayout { rx_base: RX_QUEUE_BASE, tx_base: TX_QUEUE_BASE, srrctl: SRRCTL, srrctl_drop_en: SRRCTL_DROP_EN }
    }

    fn configure_rx_queue_extra(&self, regs: &dyn Registers, queue: u16) {
        // Descriptor write-backs in order (relaxed ordering off).
        regs.clear_bits(self.queue_layout().rx_register(queue, DCA_RXCTRL), DCA_RXCTRL_DESC_RRO_EN);
    }

    fn configure_tx_queue(&self, regs: &dyn Registers, queue: u16) {
        let control = self.tx_ring(queue).control;
        regs.write(control, (regs.read(control) & !TXDCTL_THRESHOLDS_MASK) | TXDCTL_THRESHOLDS);
    }

    fn map_queue_statistics(&self, regs: &dyn Registers, queues: u16) {
        // Every queue maps to set 0 after reset: queue n to set n instead.
        for first in (0..queues.min(STATISTICS_SETS)).step_by(4) {
            let sets = u32::from_le_bytes([0, 1, 2, 3].map(|k| (first + k) as u8));
            let register = 4 * u32::from(first / 4);
            regs.write(RQSMR_BASE + register, sets);
            regs.write(TQSM_BASE + register, sets);
        }
    }

    fn read_counters(&self, regs: &dyn Registers, queue: u16) -> HardwareCounters {
        let q = u32::from(queue);
        let mut rx_missed = u64::from(regs.read(QPRDC_BASE + QUEUE_STRIDE * q));
        if queue == 0 {
            rx_missed += (0..MPC_REGISTERS).map(|i| u64::from(regs.read(MPC_BASE + 4 * i))).sum::<u64>();
        }
        HardwareCounters {
            rx_missed,
            rx_packets: u64::from(regs.read(QPRC_BASE + QUEUE_STRIDE * q)),
            rx_bytes: read_split_counter(regs, QBRC_L_BASE + QUEUE_STRIDE * q, QBRC_H_BASE + QUEUE_STRIDE * q),
            tx_packets: u64::from(regs.read(QPTC_BASE + QUEUE_STRIDE * q)),
            tx_bytes: read_split_counter(regs, QBTC_L_BASE + 8 * q, QBTC_H_BASE + 8 * q),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nic::model_registers::ModelRegisters;
    use crate::rss::RSS_DEFAULT_KEY;

    #[test]
    fn link_set_up_selects_10g_serial_and_restarts_negotiation() {
        let regs = ModelRegisters::filled(&[AUTOC], u32::MAX);
        Ixgbe.start_link(&regs).unwrap();
        let autoc = regs.read(AUTOC);
        assert_eq!(autoc & AUTOC_LMS_MASK, AUTOC_LMS_10G_SERIAL);
        assert_eq!(autoc & AUTOC_10G_PMA_PMD_MASK, AUTOC_10G_XAUI);
        assert_ne!(autoc & AUTOC_RESTART_AN, 0);
    }

    #[test]
    fn receive_takes_own_address_and_broadcast_only_and_dma_is_on() {
        let regs = ModelRegisters::filled(&[FCTRL], u32::MAX);
        Ixgbe.configure(&regs, &RSS_DEFAULT_KEY, &RedirectionTable::new(128, 4).unwrap());
        let fctrl = regs.read(FCTRL);
        assert_eq!(fctrl & (FCTRL_UPE | FCTRL_MPE), 0, "promiscuity off");
        assert_ne!(fctrl & FCTRL_BAM, 0, "broadcast on, for ARP");
        assert_ne!(regs.read(RXCTRL) & RXCTRL_RXEN, 0);
        assert_ne!(regs.read(DMATXCTL) & DMATXCTL_TE, 0);
        assert_eq!(regs.read(HLREG0) & HLREG0_RXCRCSTRP, HLREG0_RXCRCSTRP);
        assert_eq!(regs.read(RTTDCS) & RTTDCS_ARBDIS, 0, "arbiter on again");
        assert_eq!(regs.read(0x5818) & 0b1111, MRQC_RSS);
        // Queue 3 of a four-queue table sits in entry 3's low nibble.
        assert_eq!(regs.read(0x5C00).to_le_bytes(), [0, 1, 2, 3]);
    }

    #[test]
    fn per_queue_registers_follow_the_datasheet() {
        let rx = Ixgbe.rx_ring(2);
        assert_eq!((rx.base_low, rx.head, rx.tail, rx.control), (0x1080, 0x1090, 0x1098, 0x10A8));
        assert_eq!(Ixgbe.srrctl(2), 0x1094);
        let tx = Ixgbe.tx_ring(2);
        assert_eq!((tx.base_low, tx.head, tx.tail, tx.control), (0x6080, 0x6090, 0x6098, 0x60A8));
        let regs = ModelRegisters::default();
        Ixgbe.configure_rx_queue(&regs, 2);
        assert_eq!(regs.read(0x1094), 2 | (1 << 25) | (1 << 28), "2 KiB, advanced one buffer, drop when empty");
    }

    #[test]
    fn each_queue_counts_in_its_own_statistics_set() {
        let regs = ModelRegisters::default();
        Ixgbe.map_queue_statistics(&regs, 6);
        assert_eq!(regs.read(0x2300), 0x0302_0100, "queues 0-3 to sets 0-3");
        assert_eq!(regs.read(0x2304), 0x0706_0504, "queues 4-7 to sets 4-7");
        assert_eq!(regs.read(0x8600), 0x0302_0100);
        assert_eq!(regs.read(0x8604), 0x0706_0504);
        assert_eq!(regs.read(0x2308), 0, "no mapping past the queues in use");
        for (offset, value) in [
            (0x1030 + 0x40 * 5, 11),
            (0x1034 + 0x40 * 5, 1_500),
            (0x1038 + 0x40 * 5, 1),
            (0x6030 + 0x40 * 5, 12),
            (0x8700 + 8 * 5, 2_000),
            (0x8704 + 8 * 5, 0),
            (0x1430 + 0x40 * 5, 2),
        ] {
            regs.write(offset, value);
        }
        assert_eq!(
            Ixgbe.read_counters(&regs, 5),
            HardwareCounters {
                rx_missed: 2,
                rx_packets: 11,
                rx_bytes: (1 << 32) | 1_500,
                tx_packets: 12,
                tx_bytes: 2_000
            }
        );
    }
}
