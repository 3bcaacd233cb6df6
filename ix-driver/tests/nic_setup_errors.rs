//! The `igb`/`ixgbe` backends' set-up errors on a machine without a NIC for
//! them: each is one line that says what to do. (The working path runs in an
//! emulated machine: scripts/igb-e2e.sh.)

use ix_driver::{DriverError, NicConfig, NicDevice};

#[test]
fn a_missing_device_says_how_to_list_the_nics() {
    let config: NicConfig = "igb:ffff:ff:1f.7".parse().unwrap();
    let err = NicDevice::open(&config, 1, 1).unwrap_err();
    assert!(matches!(err, DriverError::NoSuchPciDevice { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("ffff:ff:1f.7") && text.contains("lspci"), "{text}");
    assert!(!text.contains('\n'), "one line: {text}");
}

#[test]
fn a_device_on_another_driver_gets_the_binding_commands() {
    // Any PCI device of this machine not bound to vfio-pci will do: the check
    // comes before anything touches it.
    let Some(address) = std::fs::read_dir("/sys/bus/pci/devices").ok().and_then(|entries| {
        entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).find(|address| {
            let driver = std::fs::read_link(format!("/sys/bus/pci/devices/{address}/driver")).ok();
            driver.is_none_or(|d| !d.ends_with("vfio-pci"))
        })
    }) else {
        eprintln!("skipped: this machine has no PCI device outside vfio-pci");
        return;
    };
    let config: NicConfig = format!("ixgbe:{address}").parse().unwrap();
    let err = NicDevice::open(&config, 1, 1).unwrap_err();
    assert!(matches!(err, DriverError::NotBoundToVfio { .. }), "{err}");
    let text = err.to_string();
    for command in ["modprobe vfio-pci", "driver_override", "drivers_probe", &address] {
        assert!(text.contains(command), "{command} missing from: {text}");
    }
    assert!(!text.contains('\n'), "one line: {text}");
}

#[test]
fn more_queues_than_the_family_spreads_over_is_refused_before_opening() {
    let mut config: NicConfig = "igb:0000:00:05.0".parse().unwrap();
    config.queues = Some(9);
    let err = NicDevice::open(&config, 9, 1).unwrap_err();
    assert!(err.to_string().contains("1 to 8"), "{err}");
}

#[test]
fn queues_that_cores_cannot_share_equally_are_refused_before_opening() {
    let config: NicConfig = "igb:0000:00:05.0".parse().unwrap();
    let err = NicDevice::open(&config, 3, 2).unwrap_err();
    assert!(err.to_string().contains("cannot be shared equally by 2 core(s)"), "{err}");
}
