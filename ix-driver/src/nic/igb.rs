//! The Intel 82576 (`igb`) register map and start-up sequence, from its
//! datasheet: reset, link through the PHY (auto-negotiation restarted over
//! MDIC), own-address and broadcast filters, RSS, queues and counters.

use std::time::Duration;

use crate::rss::RedirectionTable;

use super::family::{
    Family, HardwareCounters, MRQC_HASH_IPV4_TCP_UDP, QueueLayout, clear_multicast_table, program_rss,
    read_split_counter, station_address,
};
use super::regs::{Registers, poll_register};

const CTRL: u32 = 0x0000;
const CTRL_SLU: u32 = 1 << 6;
const CTRL_RST: u32 = 1 << 26;
const STATUS: u32 = 0x0008;
const STATUS_LU: u32 = 1 << 1;
const EECD: u32 = 0x0010;
const EECD_AUTO_RD: u32 = 1 << 9;
const MDIC: u32 = 0x0020;
const MDIC_REG_SHIFT: u32 = 16;
const MDIC_PHY_SHIFT: u32 = 21;
const MDIC_OP_WRITE: u32 = 1 << 26;
const MDIC_READY: u32 = 1 << 28;
const MDIC_ERROR: u32 = 1 << 30;
/// The internal PHY's address on the MDIO bus.
const PHY_ADDRESS: u32 = 1;
/// PHY control register (BMCR) and the value that restarts auto-negotiation
/// with 1000 Mb/s full duplex advertised.
const PHY_CONTROL: u32 = 0;
const PHY_CONTROL_RESTART_AUTONEG: u32 = 0x1340;
const IMC: u32 = 0x00D8;
const EIMC: u32 = 0x1528;
const RCTL: u32 = 0x0100;
const RCTL_EN: u32 = 1 << 1;
const RCTL_BAM: u32 = 1 << 15;
const RCTL_SECRC: u32 = 1 << 26;
const TCTL: u32 = 0x0400;
const TCTL_EN: u32 = 1 << 1;
const TCTL_PSP: u32 = 1 << 3;
const TCTL_CT_DEFAULT: u32 = 0x0F << 4;
const TCTL_COLD_FULL_DUPLEX: u32 = 0x3F << 12;
const RAL0: u32 = 0x5400;
const RAH0: u32 = 0x5404;
const MPC: u32 = 0x4010;
/// Port-wide good packet and octet counters (clear on read; octets split in
/// low and high halves).
const GPRC: u32 = 0x4074;
const GPTC: u32 = 0x4080;
const GORCL: u32 = 0x4088;
const GORCH: u32 = 0x408C;
const GOTCL: u32 = 0x4090;
const GOTCH: u32 = 0x4094;
/// MRQC: multiple receive queues by RSS.
const MRQC_RSS: u32 = 0b010;
/// Receive queue `n`'s registers start here, 0x40 apart.
const RX_QUEUE_BASE: u32 = 0xC000;
/// Transmit queue `n`'s registers start here, 0x40 apart.
const TX_QUEUE_BASE: u32 = 0xE000;
const SRRCTL: u32 = 0x0C;
const RQDPC: u32 = 0x30;
const SRRCTL_DROP_EN: u32 = 1 << 31;

const RESET_TIMEOUT: Duration = Duration::from_millis(100);
/// The datasheet's bound on the EEPROM auto-read after a reset.
const EEPROM_READ_TIMEOUT: Duration = Duration::from_millis(10);
const MDIC_TIMEOUT: Duration = Duration::from_millis(100);

/// The 82576.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Igb;

impl Family for Igb {
    fn name(&self) -> &'static str {
        "igb"
    }

    fn max_queues(&self) -> u16 {
        // RSS spreads over eight queues (a redirection entry names 0..7).
        8
    }

    fn reset(&self, regs: &dyn Registers) -> Result<(), String> {
        regs.write(IMC, u32::MAX);
        regs.write(EIMC, u32::MAX);
        // Stop receive and transmit DMA before the reset.
        regs.write(RCTL, 0);
        regs.write(TCTL, TCTL_PSP);
        std::thread::sleep(Duration::from_millis(10));
        regs.set_bits(CTRL, CTRL_RST);
        std::thread::sleep(Duration::from_millis(1));
        if !poll_register(regs, CTRL, RESET_TIMEOUT, |v| v & CTRL_RST == 0).1 {
            return Err("CTRL.RST did not clear after a reset".into());
        }
        regs.write(IMC, u32::MAX);
        regs.write(EIMC, u32::MAX);
        if !poll_register(regs, EECD, EEPROM_READ_TIMEOUT, |v| v & EECD_AUTO_RD != 0).1 {
            // QEMU's 82576 never sets the bit (its registers are loaded at once):
            // after the wait, go on and trust RAL/RAH.
            tracing::debug!("EECD.AUTO_RD not set after {EEPROM_READ_TIMEOUT:?}; going on");
        }
        Ok(())
    }

    fn start_link(&self, regs: &dyn Registers) -> Result<(), String> {
        regs.set_bits(CTRL, CTRL_SLU);
        let command = PHY_CONTROL_RESTART_AUTONEG
            | (PHY_CONTROL << MDIC_REG_SHIFT)
            | (PHY_ADDRESS << MDIC_PHY_SHIFT)
            | MDIC_OP_WRITE;
        regs.write(MDIC, command);
        let (value, ready) = poll_register(regs, MDIC, MDIC_TIMEOUT, |v| v & MDIC_READY != 0);
        if !ready {
            return Err("the PHY did not answer a write through MDIC".into());
        }
        if value & MDIC_ERROR != 0 {
            return Err("the PHY refused the auto-negotiation restart (MDIC.E)".into());
        }
        Ok(())
    }

    fn link_up(&self, regs: &dyn Registers) -> bool {
        regs.read(STATUS) & STATUS_LU != 0
    }

    fn mac_address(&self, regs: &dyn Registers) -> [u8; 6] {
        station_address(regs, RAL0, RAH0)
    }

    fn configure(&self, regs: &dyn Registers, key: &[u8; 40], table: &RedirectionTable) {
        clear_multicast_table(regs);
        program_rss(regs, key, table, MRQC_RSS | MRQC_HASH_IPV4_TCP_UDP);
        // Own address (RAL/RAH 0, loaded from the EEPROM) and broadcast; no
        // promiscuous unicast or multicast; 2 KiB buffers; CRC stripped.
        regs.write(RCTL, RCTL_BAM | RCTL_SECRC | RCTL_EN);
        regs.write(TCTL, TCTL_EN | TCTL_PSP | TCTL_CT_DEFAULT | TCTL_COLD_FULL_DUPLEX);
    }

    fn queue_layout(&self) -> QueueLayout {
        QueueLayout { rx_base: RX_QUEUE_BASE, tx_base: TX_QUEUE_BASE, srrctl: SRRCTL, srrctl_drop_en: SRRCTL_DROP_EN }
    }

    fn configure_tx_queue(&self, _regs: &dyn Registers, _queue: u16) {
        // The reset values of TXDCTL's thresholds suit one descriptor per frame.
    }

    fn read_counters(&self, regs: &dyn Registers, queue: u16) -> HardwareCounters {
        let rx_missed = u64::from(regs.read(self.queue_layout().rx_register(queue, RQDPC)));
        if queue != 0 {
            return HardwareCounters { rx_missed, ..HardwareCounters::default() };
        }
        // The 82576 counts good frames and octets for the whole port (its
        // per-pool counters are for virtual functions): queue 0 reads them.
        HardwareCounters {
            // Frames missed for want of room in the receive FIFO.
            rx_missed: rx_missed + u64::from(regs.read(MPC)),
            rx_packets: u64::from(regs.read(GPRC)),
            rx_bytes: read_split_counter(regs, GORCL, GORCH),
            tx_packets: u64::from(regs.read(GPTC)),
            tx_bytes: read_split_counter(regs, GOTCL, GOTCH),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nic::model_registers::ModelRegisters;
    use crate::rss::RSS_DEFAULT_KEY;

    #[test]
    fn receive_takes_own_address_and_broadcast_only() {
        // Every bit set before: promiscuity must be turned off, not assumed off.
        let regs = ModelRegisters::filled(&[RCTL, TCTL], u32::MAX);
        Igb.configure(&regs, &RSS_DEFAULT_KEY, &RedirectionTable::new(128, 2).unwrap());
        let rctl = regs.read(RCTL);
        assert_eq!(rctl & ((1 << 3) | (1 << 4)), 0, "unicast and multicast promiscuity off");
        assert_eq!(rctl & (RCTL_EN | RCTL_BAM | RCTL_SECRC), RCTL_EN | RCTL_BAM | RCTL_SECRC);
        assert_eq!(rctl & (0b11 << 16), 0, "2 KiB buffers");
        assert_ne!(regs.read(TCTL) & TCTL_EN, 0);
        assert_eq!(regs.read(0x5818) & 0b111, MRQC_RSS);
        assert!((0..128).all(|i| regs.read(0x5200 + 4 * i) == 0), "multicast table cleared");
    }

    #[test]
    fn per_queue_registers_follow_the_datasheet() {
        let rx = Igb.rx_ring(1);
        assert_eq!((rx.base_low, rx.len, rx.head, rx.tail, rx.control), (0xC040, 0xC048, 0xC050, 0xC058, 0xC068));
        assert_eq!(Igb.srrctl(1), 0xC04C);
        let tx = Igb.tx_ring(1);
        assert_eq!((tx.base_low, tx.head, tx.tail, tx.control), (0xE040, 0xE050, 0xE058, 0xE068));
        let regs = ModelRegisters::default();
        Igb.configure_rx_queue(&regs, 1);
        assert_eq!(regs.read(0xC04C), 2 | (1 << 25) | (1 << 31), "2 KiB, advanced one buffer, drop when empty");
    }

    #[test]
    fn station_address_comes_from_ral0_and_rah0() {
        let regs = ModelRegisters::default();
        regs.write(RAL0, 0x1200_5452);
        regs.write(RAH0, 0x8000_5634);
        assert_eq!(Igb.mac_address(&regs), [0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    }

    #[test]
    fn queue_0_reads_the_port_s_good_frame_counters_and_other_queues_their_drops() {
        let regs = ModelRegisters::default();
        for (offset, value) in [
            (0xC030, 3),
            (0xC070, 4),
            (MPC, 5),
            (GPRC, 100),
            (GPTC, 90),
            (GORCL, 0xFFFF_FFF0),
            (GORCH, 2),
            (GOTCL, 7_000),
            (GOTCH, 0),
        ] {
            regs.write(offset, value);
        }
        let queue_0 = Igb.read_counters(&regs, 0);
        assert_eq!(
            queue_0,
            HardwareCounters {
                rx_missed: 3 + 5,
                rx_packets: 100,
                rx_bytes: (2 << 32) | 0xFFFF_FFF0,
                tx_packets: 90,
                tx_bytes: 7_000
            }
        );
        assert_eq!(Igb.read_counters(&regs, 1), HardwareCounters { rx_missed: 4, ..HardwareCounters::default() });
    }
}
