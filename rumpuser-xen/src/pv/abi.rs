//! The few Xen public ABI layouts the platform reads or passes to Xen, as in
//! `xen/include/public/xen.h`, `arch-x86/xen.h`, `grant_table.h`,
//! `event_channel.h` and `vcpu.h` for x86_64. Offsets were checked against
//! the C headers with `offsetof`.

/// `struct start_info` (`xen.h`), the fields this platform reads.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct StartInfo {
    /// "xen-<version>-<platform>".
    pub magic: [u8; 32],
    /// Total pages allocated to this domain.
    pub nr_pages: u64,
    /// Machine address of the shared info structure.
    pub shared_info: u64,
    /// `SIF_*` flags.
    pub flags: u32,
    /// Machine frame of the xenstore ring page.
    pub store_mfn: u64,
    /// Event channel of the xenstore ring.
    pub store_evtchn: u32,
    /// Machine frame of the console ring page (`console.domU.mfn`).
    pub console_mfn: u64,
    /// Event channel of the console ring (`console.domU.evtchn`).
    pub console_evtchn: u32,
    /// Virtual address of the bootstrap level-4 page table.
    pub pt_base: u64,
    /// Number of bootstrap page-table frames.
    pub nr_pt_frames: u64,
    /// Virtual address of the pseudo-physical to machine frame list.
    pub mfn_list: u64,
    /// Virtual address of the initial ramdisk, if any.
    pub mod_start: u64,
    /// Size of the initial ramdisk.
    pub mod_len: u64,
    /// The guest command line (`extra=`), NUL-terminated.
    pub cmd_line: [u8; 1024],
}

/// `struct trap_info` (`arch-x86/xen.h`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TrapInfo {
    pub vector: u8,
    pub flags: u8,
    pub cs: u16,
    pub address: u64,
}

/// `struct mmu_update` (`xen.h`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct MmuUpdate {
    pub ptr: u64,
    pub val: u64,
}

/// `struct gnttab_copy_ptr` (`grant_table.h`): `u` is a gref or a gmfn.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct GnttabCopyPtr {
    pub u: u64,
    pub domid: u16,
    pub offset: u16,
}

/// `struct gnttab_copy` (`grant_table.h`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct GnttabCopy {
    pub source: GnttabCopyPtr,
    pub dest: GnttabCopyPtr,
    pub len: u16,
    pub flags: u16,
    pub status: i16,
}

/// `struct gnttab_map_grant_ref` (`grant_table.h`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct GnttabMapGrantRef {
    pub host_addr: u64,
    pub flags: u32,
    pub r#ref: u32,
    pub dom: u16,
    pub status: i16,
    pub handle: u32,
    pub dev_bus_addr: u64,
}

/// `struct gnttab_unmap_grant_ref` (`grant_table.h`).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct GnttabUnmapGrantRef {
    pub host_addr: u64,
    pub dev_bus_addr: u64,
    pub handle: u32,
    pub status: i16,
}

/// `XEN_ELFNOTE`-independent constants from `xen.h` and friends.
pub mod consts {
    pub const HYPERVISOR_SET_TRAP_TABLE: u32 = 0;
    pub const HYPERVISOR_MMU_UPDATE: u32 = 1;
    pub const HYPERVISOR_SET_CALLBACKS: u32 = 4;
    pub const HYPERVISOR_UPDATE_VA_MAPPING: u32 = 14;
    pub const HYPERVISOR_SET_TIMER_OP: u32 = 15;
    pub const HYPERVISOR_GRANT_TABLE_OP: u32 = 20;
    pub const HYPERVISOR_VCPU_OP: u32 = 24;
    pub const HYPERVISOR_SCHED_OP: u32 = 29;
    pub const HYPERVISOR_EVENT_CHANNEL_OP: u32 = 32;

    pub const SCHEDOP_YIELD: u64 = 0;
    pub const SCHEDOP_BLOCK: u64 = 1;
    pub const SCHEDOP_SHUTDOWN: u64 = 2;
    pub const SHUTDOWN_POWEROFF: u32 = 0;
    pub const SHUTDOWN_REBOOT: u32 = 1;
    pub const SHUTDOWN_CRASH: u32 = 3;

    pub const EVTCHNOP_BIND_INTERDOMAIN: u64 = 0;
    pub const EVTCHNOP_BIND_VIRQ: u64 = 1;
    pub const EVTCHNOP_CLOSE: u64 = 3;
    pub const EVTCHNOP_SEND: u64 = 4;
    pub const EVTCHNOP_ALLOC_UNBOUND: u64 = 6;
    pub const EVTCHNOP_UNMASK: u64 = 9;
    pub const VIRQ_TIMER: u32 = 0;

    pub const GNTTABOP_MAP_GRANT_REF: u64 = 0;
    pub const GNTTABOP_UNMAP_GRANT_REF: u64 = 1;
    pub const GNTTABOP_COPY: u64 = 5;
    pub const GNTCOPY_SOURCE_GREF: u16 = 1 << 0;
    pub const GNTCOPY_DEST_GREF: u16 = 1 << 1;
    pub const GNTMAP_HOST_MAP: u32 = 1 << 1;
    pub const GNTMAP_READONLY: u32 = 1 << 2;

    pub const VCPUOP_STOP_PERIODIC_TIMER: u64 = 7;

    pub const MMU_NORMAL_PT_UPDATE: u64 = 0;
    pub const UVMF_INVLPG: u64 = 2;
    pub const DOMID_SELF: u16 = 0x7ff0;

    /// `FLAT_KERNEL_CS` for x86_64 (`arch-x86/xen-x86_64.h`).
    pub const FLAT_KERNEL_CS: u16 = 0xe033;
    /// Read-only machine-to-phys table every PV guest sees
    /// (`MACH2PHYS_VIRT_START`, `arch-x86/xen-x86_64.h`).
    pub const MACH2PHYS_VIRT_START: u64 = 0xffff_8000_0000_0000;

    /// Offsets inside `struct shared_info` and `struct vcpu_info`.
    pub const SHARED_INFO_EVTCHN_PENDING: usize = 2048;
    pub const SHARED_INFO_EVTCHN_MASK: usize = 2560;
    pub const VCPU_INFO_UPCALL_PENDING: usize = 0;
    pub const VCPU_INFO_UPCALL_MASK: usize = 1;
    pub const VCPU_INFO_PENDING_SEL: usize = 8;
    pub const VCPU_INFO_CR2: usize = 16;
    pub const VCPU_INFO_TIME: usize = 32;
}
