//! A PCI device opened through VFIO: container, group and device descriptors,
//! BAR0 mapped for its registers, bus mastering on, and DMA mappings of this
//! process's memory into the device's IOMMU domain.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use crate::error::DriverError;

use super::regs::MappedBar;

/// `_IO(VFIO_TYPE, VFIO_BASE + n)`: VFIO's ioctls carry no size.
const fn vfio_ioctl(n: u64) -> u64 {
    ((b';' as u64) << 8) | (100 + n)
}
const VFIO_GET_API_VERSION: u64 = vfio_ioctl(0);
const VFIO_CHECK_EXTENSION: u64 = vfio_ioctl(1);
const VFIO_SET_IOMMU: u64 = vfio_ioctl(2);
const VFIO_GROUP_GET_STATUS: u64 = vfio_ioctl(3);
const VFIO_GROUP_SET_CONTAINER: u64 = vfio_ioctl(4);
const VFIO_GROUP_GET_DEVICE_FD: u64 = vfio_ioctl(6);
const VFIO_DEVICE_GET_INFO: u64 = vfio_ioctl(7);
const VFIO_DEVICE_GET_REGION_INFO: u64 = vfio_ioctl(8);
const VFIO_DEVICE_RESET: u64 = vfio_ioctl(11);
const VFIO_IOMMU_MAP_DMA: u64 = vfio_ioctl(13);
const VFIO_IOMMU_UNMAP_DMA: u64 = vfio_ioctl(14);

const VFIO_API_VERSION: libc::c_int = 0;
const VFIO_TYPE1_IOMMU: libc::c_ulong = 1;
const VFIO_TYPE1V2_IOMMU: libc::c_ulong = 3;
const VFIO_GROUP_FLAGS_VIABLE: u32 = 1;
const VFIO_DEVICE_FLAGS_RESET: u32 = 1;
const VFIO_REGION_INFO_FLAG_MMAP: u32 = 1 << 2;
const VFIO_DMA_MAP_FLAG_READ_WRITE: u32 = 0b11;
const VFIO_PCI_BAR0_REGION_INDEX: u32 = 0;
const VFIO_PCI_CONFIG_REGION_INDEX: u32 = 7;
/// PCI configuration space: the command register and its bits.
const PCI_COMMAND_OFFSET: u64 = 4;
const PCI_COMMAND_MEMORY: u16 = 1 << 1;
const PCI_COMMAND_MASTER: u16 = 1 << 2;

#[repr(C)]
#[derive(Default)]
struct GroupStatus {
    argsz: u32,
    flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct DeviceInfo {
    argsz: u32,
    flags: u32,
    num_regions: u32,
    num_irqs: u32,
}

#[repr(C)]
#[derive(Default)]
struct RegionInfo {
    argsz: u32,
    flags: u32,
    index: u32,
    cap_offset: u32,
    size: u64,
    offset: u64,
}

#[repr(C)]
struct DmaMap {
    argsz: u32,
    flags: u32,
    vaddr: u64,
    iova: u64,
    size: u64,
}

#[repr(C)]
struct DmaUnmap {
    argsz: u32,
    flags: u32,
    iova: u64,
    size: u64,
}

/// A PCI device bound to vfio-pci and opened by this process. Dropping it
/// closes the descriptors, and VFIO resets the device and unpins its memory;
/// the kernel does the same when the process dies, however it dies.
#[derive(Debug)]
pub(crate) struct VfioDevice {
    /// Declared first: registers unmap before the device closes.
    bar0: MappedBar,
    device: OwnedFd,
    _group: OwnedFd,
    container: OwnedFd,
    config_offset: u64,
    address: String,
}

impl VfioDevice {
    /// Opens the device at PCI address `address` (`DDDD:BB:DD.F`) for `backend`.
    ///
    /// # Errors
    /// One line each, saying what to do: [`DriverError::NoSuchPciDevice`],
    /// [`DriverError::NotBoundToVfio`], [`DriverError::NoIommuGroup`],
    /// [`DriverError::DeviceMissing`] without the vfio modules,
    /// [`DriverError::Privilege`] when the group cannot be opened,
    /// [`DriverError::GroupNotViable`]; [`DriverError::Os`] for a failing VFIO
    /// call.
    pub(crate) fn open(address: &str, backend: &'static str) -> Result<Self, DriverError> {
        let sysfs = Path::new("/sys/bus/pci/devices").join(address);
        if !sysfs.exists() {
            return Err(DriverError::NoSuchPciDevice { backend, address: address.to_string() });
        }
        let driver = link_name(&sysfs.join("driver"));
        if driver.as_deref() != Some("vfio-pci") {
            return Err(DriverError::NotBoundToVfio {
                backend,
                address: address.to_string(),
                driver: driver.unwrap_or_else(|| "no driver".into()),
            });
        }
        let group = link_name(&sysfs.join("iommu_group"))
            .ok_or_else(|| DriverError::NoIommuGroup { backend, address: address.to_string() })?;
        let container = open_file(Path::new("/dev/vfio/vfio"), backend)?;
        // SAFETY: a plain ioctl without argument on a descriptor we own.
        if unsafe { libc::ioctl(container.as_raw_fd(), VFIO_GET_API_VERSION) } != VFIO_API_VERSION {
            return Err(DriverError::Config("/dev/vfio/vfio speaks an unknown VFIO API version".into()));
        }
        let iommu = [VFIO_TYPE1V2_IOMMU, VFIO_TYPE1_IOMMU]
            .into_iter()
            // SAFETY: VFIO_CHECK_EXTENSION takes an integer argument by value.
            .find(|&kind| unsafe { libc::ioctl(container.as_raw_fd(), VFIO_CHECK_EXTENSION, kind) } > 0)
            .ok_or_else(|| {
                DriverError::Config("this kernel's VFIO has no type 1 IOMMU: modprobe vfio_iommu_type1".into())
            })?;
        let group_fd = open_file(&PathBuf::from(format!("/dev/vfio/{group}")), backend)?;
        let mut status = GroupStatus { argsz: size_of::<GroupStatus>() as u32, ..GroupStatus::default() };
        // SAFETY: the argument points to a live, correctly sized vfio_group_status.
        if unsafe { libc::ioctl(group_fd.as_raw_fd(), VFIO_GROUP_GET_STATUS, &mut status) } != 0 {
            return Err(DriverError::os("ioctl(VFIO_GROUP_GET_STATUS)"));
        }
        if status.flags & VFIO_GROUP_FLAGS_VIABLE == 0 {
            return Err(DriverError::GroupNotViable { backend, group });
        }
        let container_raw = container.as_raw_fd();
        // SAFETY: the argument points to the container's descriptor, an int.
        if unsafe { libc::ioctl(group_fd.as_raw_fd(), VFIO_GROUP_SET_CONTAINER, &container_raw) } != 0 {
            return Err(DriverError::os("ioctl(VFIO_GROUP_SET_CONTAINER)"));
        }
        // SAFETY: VFIO_SET_IOMMU takes the IOMMU type by value.
        if unsafe { libc::ioctl(container.as_raw_fd(), VFIO_SET_IOMMU, iommu) } != 0 {
            return Err(DriverError::os("ioctl(VFIO_SET_IOMMU)"));
        }
        let name = CString::new(address).map_err(|_| DriverError::Config("PCI address with a NUL byte".into()))?;
        // SAFETY: the argument is a NUL-terminated string that outlives the call.
        let raw = unsafe { libc::ioctl(group_fd.as_raw_fd(), VFIO_GROUP_GET_DEVICE_FD, name.as_ptr()) };
        if raw < 0 {
            return Err(DriverError::os("ioctl(VFIO_GROUP_GET_DEVICE_FD)"));
        }
        // SAFETY: a fresh descriptor that nothing else owns.
        let device = unsafe { OwnedFd::from_raw_fd(raw) };
        reset(&device);
        let bar = region_info(&device, VFIO_PCI_BAR0_REGION_INDEX)?;
        if bar.flags & VFIO_REGION_INFO_FLAG_MMAP == 0 || bar.size == 0 {
            return Err(DriverError::Config(format!("{address}: BAR0 cannot be mapped (is it a NIC of this family?)")));
        }
        let bar0 = map_bar(&device, &bar)?;
        let config_offset = region_info(&device, VFIO_PCI_CONFIG_REGION_INDEX)?.offset;
        let this = Self { bar0, device, _group: group_fd, container, config_offset, address: address.to_string() };
        this.enable_bus_mastering()?;
        Ok(this)
    }

    /// The device's registers.
    pub(crate) fn bar0(&self) -> &MappedBar {
        &self.bar0
    }

    /// The PCI address.
    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    /// Lets the device read and write `len` bytes at `vaddr` through the IOMMU
    /// at `iova`. The pages are pinned until [`VfioDevice::unmap_dma`] or the
    /// container closes.
    ///
    /// # Errors
    /// [`DriverError::Os`]: an address outside the IOMMU's range, or more
    /// memory than `RLIMIT_MEMLOCK` allows.
    pub(crate) fn map_dma(&self, vaddr: NonNull<u8>, iova: u64, len: usize) -> Result<(), DriverError> {
        let map = DmaMap {
            argsz: size_of::<DmaMap>() as u32,
            flags: VFIO_DMA_MAP_FLAG_READ_WRITE,
            vaddr: vaddr.as_ptr() as u64,
            iova,
            size: len as u64,
        };
        // SAFETY: the argument points to a live vfio_iommu_type1_dma_map; the
        // kernel pins the caller's mapping, which the caller keeps alive until
        // `unmap_dma` (or for the container's life).
        if unsafe { libc::ioctl(self.container.as_raw_fd(), VFIO_IOMMU_MAP_DMA, &map) } != 0 {
            return Err(DriverError::os("ioctl(VFIO_IOMMU_MAP_DMA)"));
        }
        Ok(())
    }

    /// Removes a mapping made by [`VfioDevice::map_dma`]; failures are logged
    /// (the container's close removes it anyway).
    pub(crate) fn unmap_dma(&self, iova: u64, len: usize) {
        let unmap = DmaUnmap { argsz: size_of::<DmaUnmap>() as u32, flags: 0, iova, size: len as u64 };
        // SAFETY: the argument points to a live vfio_iommu_type1_dma_unmap.
        if unsafe { libc::ioctl(self.container.as_raw_fd(), VFIO_IOMMU_UNMAP_DMA, &unmap) } != 0 {
            tracing::warn!(iova, len, error = %std::io::Error::last_os_error(), "VFIO_IOMMU_UNMAP_DMA failed");
        }
    }

    fn enable_bus_mastering(&self) -> Result<(), DriverError> {
        let mut command = [0u8; 2];
        let at = (self.config_offset + PCI_COMMAND_OFFSET) as libc::off_t;
        // SAFETY: reads 2 bytes into a 2-byte buffer.
        if unsafe { libc::pread(self.device.as_raw_fd(), command.as_mut_ptr().cast(), 2, at) } != 2 {
            return Err(DriverError::os("pread(PCI command register)"));
        }
        let value = u16::from_le_bytes(command) | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
        let bytes = value.to_le_bytes();
        // SAFETY: writes 2 bytes from a 2-byte buffer.
        if unsafe { libc::pwrite(self.device.as_raw_fd(), bytes.as_ptr().cast(), 2, at) } != 2 {
            return Err(DriverError::os("pwrite(PCI command register)"));
        }
        Ok(())
    }
}

/// Resets the function when VFIO can (a clean start after a previous owner).
fn reset(device: &OwnedFd) {
    let mut info = DeviceInfo { argsz: size_of::<DeviceInfo>() as u32, ..DeviceInfo::default() };
    // SAFETY: the argument points to a live, correctly sized vfio_device_info.
    let known = unsafe { libc::ioctl(device.as_raw_fd(), VFIO_DEVICE_GET_INFO, &mut info) } == 0;
    if known && info.flags & VFIO_DEVICE_FLAGS_RESET != 0 {
        // SAFETY: a plain ioctl without argument.
        if unsafe { libc::ioctl(device.as_raw_fd(), VFIO_DEVICE_RESET) } != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "VFIO_DEVICE_RESET failed; the driver resets the NIC");
        }
    }
}

fn region_info(device: &OwnedFd, index: u32) -> Result<RegionInfo, DriverError> {
    let mut info = RegionInfo { argsz: size_of::<RegionInfo>() as u32, index, ..RegionInfo::default() };
    // SAFETY: the argument points to a live, correctly sized vfio_region_info.
    if unsafe { libc::ioctl(device.as_raw_fd(), VFIO_DEVICE_GET_REGION_INFO, &mut info) } != 0 {
        return Err(DriverError::os("ioctl(VFIO_DEVICE_GET_REGION_INFO)"));
    }
    Ok(info)
}

fn map_bar(device: &OwnedFd, bar: &RegionInfo) -> Result<MappedBar, DriverError> {
    let len =
        usize::try_from(bar.size).map_err(|_| DriverError::Config("BAR0 larger than the address space".into()))?;
    let offset =
        libc::off_t::try_from(bar.offset).map_err(|_| DriverError::Config("BAR0 offset out of range".into()))?;
    // SAFETY: a fresh shared mapping chosen by the kernel of the device's BAR0
    // region; no existing memory is affected.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            device.as_raw_fd(),
            offset,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(DriverError::os("mmap(BAR0)"));
    }
    let base = NonNull::new(ptr.cast()).ok_or_else(|| DriverError::os("mmap(BAR0) returned null"))?;
    // SAFETY: `base..base + len` is the mapping just made, owned by the result.
    Ok(unsafe { MappedBar::new(base, len) })
}

fn open_file(path: &Path, backend: &'static str) -> Result<OwnedFd, DriverError> {
    std::fs::OpenOptions::new().read(true).write(true).open(path).map(OwnedFd::from).map_err(|error| {
        match error.kind() {
            std::io::ErrorKind::NotFound if path == Path::new("/dev/vfio/vfio") => DriverError::DeviceMissing {
                backend,
                path: "/dev/vfio/vfio",
                hint: "load VFIO with `modprobe vfio-pci vfio_iommu_type1`",
            },
            std::io::ErrorKind::PermissionDenied => DriverError::Privilege {
                backend,
                what: "access to /dev/vfio (root, or the group's owner)",
                alternative: "xdp:IFACE",
            },
            _ => DriverError::Os { call: "open(/dev/vfio/...)", source: error },
        }
    })
}

/// The last component of a symbolic link's target (a driver or a group).
fn link_name(link: &Path) -> Option<String> {
    std::fs::read_link(link).ok()?.file_name().map(|name| name.to_string_lossy().into_owned())
}
