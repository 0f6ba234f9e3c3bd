//! Differential layout test: the generated Rust types against what gcc
//! makes of the same headers.
//!
//! For every structure listed below, the test writes a C program that
//! prints `sizeof` and `offsetof` of each listed field (and the values of
//! the listed constants), builds it with gcc against `/usr/include/xen`,
//! runs it, and compares every line with `size_of`/`offset_of!` on the Rust
//! side. The x86_64 types are checked with `gcc -m64`; the x86_32 blkif
//! types, and the netif types that claim one layout for both ABIs, with
//! `gcc -m32`. bindgen read the headers with clang, so this is a second
//! compiler's opinion, and it also checks the `packed(4)` rewrite of the
//! x86_32 module.
//!
//! Needs gcc, gcc-multilib (for `-m32`) and libxen-dev; without them the
//! test fails, saying which is missing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::mem::{offset_of, size_of};
use std::path::Path;
use std::process::Command;

use xen_abi::*;

/// One structure: its C spelling, Rust size and Rust field offsets.
struct Layout {
    c_type: &'static str,
    size: usize,
    fields: Vec<(&'static str, usize)>,
}

/// The C name of a field whose Rust name bindgen had to change.
macro_rules! c_field {
    ($field:ident) => {
        stringify!($field)
    };
    ($field:ident, $c_name:literal) => {
        $c_name
    };
}

macro_rules! layouts {
    ($($c_type:literal => $rust:ty { $($field:ident $(= $c_name:literal)?),* $(,)? })*) => {
        vec![$(Layout {
            c_type: $c_type,
            size: size_of::<$rust>(),
            fields: vec![$((c_field!($field $(, $c_name)?), offset_of!($rust, $field))),*],
        }),*]
    };
}

macro_rules! constants {
    ($($name:ident),* $(,)?) => {
        vec![$((stringify!($name), i128::from($name))),*]
    };
}

fn x86_64_layouts() -> Vec<Layout> {
    use xen_abi::blkif::x86_64 as blk;
    layouts! {
        "struct blkif_request_segment" => blk::blkif_request_segment { gref, first_sect, last_sect }
        "struct blkif_request" => blk::blkif_request {
            operation, nr_segments, handle, id, sector_number, seg
        }
        "struct blkif_request_discard" => blk::blkif_request_discard {
            operation, flag, handle, id, sector_number, nr_sectors
        }
        "struct blkif_request_indirect" => blk::blkif_request_indirect {
            operation, indirect_op, nr_segments, id, sector_number, handle, indirect_grefs
        }
        "struct blkif_response" => blk::blkif_response { id, operation, status }
        "union blkif_sring_entry" => blk::blkif_sring_entry { req, rsp }
        "struct blkif_sring" => blk::blkif_sring {
            req_prod, req_event, rsp_prod, rsp_event, pvt, __pad, ring
        }
        "struct netif_tx_request" => netif_tx_request { gref, offset, flags, id, size }
        "struct netif_tx_response" => netif_tx_response { id, status }
        "struct netif_rx_request" => netif_rx_request { id, gref }
        "struct netif_rx_response" => netif_rx_response { id, offset, flags, status }
        "struct netif_extra_info" => netif_extra_info { type_ = "type", flags, u }
        "union netif_tx_sring_entry" => netif_tx_sring_entry { req, rsp }
        "union netif_rx_sring_entry" => netif_rx_sring_entry { req, rsp }
        "struct netif_tx_sring" => netif_tx_sring { req_prod, req_event, rsp_prod, rsp_event, ring }
        "struct netif_rx_sring" => netif_rx_sring { req_prod, req_event, rsp_prod, rsp_event, ring }
        "struct xsd_sockmsg" => xsd_sockmsg { type_ = "type", req_id, tx_id, len }
        "struct xenstore_domain_interface" => xenstore_domain_interface {
            req, rsp, req_cons, req_prod, rsp_cons, rsp_prod, server_features, connection, error
        }
        "struct xencons_interface" => xencons_interface {
            in_ = "in", out, in_cons, in_prod, out_cons, out_prod
        }
        "struct start_info" => start_info {
            magic, nr_pages, shared_info, flags, store_mfn, store_evtchn, console, pt_base,
            nr_pt_frames, mfn_list, mod_start, mod_len, cmd_line, first_p2m_pfn, nr_p2m_frames
        }
        "struct shared_info" => shared_info {
            vcpu_info, evtchn_pending, evtchn_mask, wc_version, wc_sec, wc_nsec, wc_sec_hi, arch
        }
        "struct arch_shared_info" => arch_shared_info {
            max_pfn, pfn_to_mfn_frame_list_list, nmi_reason, p2m_cr3, p2m_vaddr, p2m_generation
        }
        "struct vcpu_info" => vcpu_info {
            evtchn_upcall_pending, evtchn_upcall_mask, evtchn_pending_sel, arch, time
        }
        "struct vcpu_time_info" => vcpu_time_info {
            version, pad0, tsc_timestamp, system_time, tsc_to_system_mul, tsc_shift, flags, pad1
        }
        "struct grant_entry_v1" => grant_entry_v1 { flags, domid, frame }
        "struct gnttab_copy_ptr" => gnttab_copy_gnttab_copy_ptr { u, domid, offset }
        "struct gnttab_copy" => gnttab_copy { source, dest, len, flags, status }
        "struct gnttab_map_grant_ref" => gnttab_map_grant_ref {
            host_addr, flags, ref_ = "ref", dom, status, handle, dev_bus_addr
        }
        "struct gnttab_unmap_grant_ref" => gnttab_unmap_grant_ref {
            host_addr, dev_bus_addr, handle, status
        }
        "struct gnttab_setup_table" => gnttab_setup_table { dom, nr_frames, status, frame_list }
        "struct gnttab_query_size" => gnttab_query_size {
            dom, nr_frames, max_nr_frames, status
        }
        "struct evtchn_alloc_unbound" => evtchn_alloc_unbound { dom, remote_dom, port }
        "struct evtchn_bind_interdomain" => evtchn_bind_interdomain {
            remote_dom, remote_port, local_port
        }
        "struct evtchn_bind_virq" => evtchn_bind_virq { virq, vcpu, port }
        "struct evtchn_send" => evtchn_send { port }
        "struct evtchn_close" => evtchn_close { port }
        "struct evtchn_unmask" => evtchn_unmask { port }
        "struct sched_shutdown" => sched_shutdown { reason }
        "struct sched_poll" => sched_poll { ports, nr_ports, timeout }
        "struct mmu_update" => mmu_update { ptr, val }
        "struct mmuext_op" => mmuext_op { cmd, arg1, arg2 }
        "struct multicall_entry" => multicall_entry { op, result, args }
        "struct trap_info" => trap_info { vector, flags, cs, address }
        "struct xen_memory_reservation" => xen_memory_reservation {
            extent_start, nr_extents, extent_order, mem_flags, domid
        }
        "struct xen_add_to_physmap" => xen_add_to_physmap { domid, size, space, idx, gpfn }
        "struct vcpu_register_vcpu_info" => vcpu_register_vcpu_info { mfn, offset, rsvd }
        "struct vcpu_set_singleshot_timer" => vcpu_set_singleshot_timer { timeout_abs_ns, flags }
        "struct vcpu_runstate_info" => vcpu_runstate_info { state, state_entry_time, time }
        "struct vcpu_guest_context" => vcpu_guest_context {
            fpu_ctxt, flags, user_regs, trap_ctxt, ldt_base, ldt_ents, gdt_frames, gdt_ents,
            kernel_ss, kernel_sp, ctrlreg, debugreg, event_callback_eip, failsafe_callback_eip,
            syscall_callback_eip, vm_assist, fs_base, gs_base_kernel, gs_base_user
        }
        "struct xen_pci_op" => xen_pci_op {
            cmd, err, domain, bus, devfn, offset, size, value, info, msix_entries
        }
        "struct xen_pci_sharedinfo" => xen_pci_sharedinfo { flags, op, aer_op }
    }
}

/// The x86_32 blkif layouts, and the netif layouts that must not differ
/// between the ABIs (the Rust side is the x86_64 type on purpose).
fn x86_32_layouts() -> Vec<Layout> {
    use xen_abi::blkif::x86_32 as blk;
    layouts! {
        "struct blkif_request_segment" => blk::blkif_request_segment { gref, first_sect, last_sect }
        "struct blkif_request" => blk::blkif_request {
            operation, nr_segments, handle, id, sector_number, seg
        }
        "struct blkif_request_discard" => blk::blkif_request_discard {
            operation, flag, handle, id, sector_number, nr_sectors
        }
        "struct blkif_request_indirect" => blk::blkif_request_indirect {
            operation, indirect_op, nr_segments, id, sector_number, handle, indirect_grefs, pad
        }
        "struct blkif_response" => blk::blkif_response { id, operation, status }
        "union blkif_sring_entry" => blk::blkif_sring_entry { req, rsp }
        "struct blkif_sring" => blk::blkif_sring {
            req_prod, req_event, rsp_prod, rsp_event, pvt, __pad, ring
        }
        "struct netif_tx_request" => netif_tx_request { gref, offset, flags, id, size }
        "struct netif_tx_response" => netif_tx_response { id, status }
        "struct netif_rx_request" => netif_rx_request { id, gref }
        "struct netif_rx_response" => netif_rx_response { id, offset, flags, status }
        "struct netif_extra_info" => netif_extra_info { type_ = "type", flags, u }
        "union netif_tx_sring_entry" => netif_tx_sring_entry { req, rsp }
        "union netif_rx_sring_entry" => netif_rx_sring_entry { req, rsp }
    }
}

/// Constants whose Rust value and type were chosen in build.rs.
fn constants() -> Vec<(&'static str, i128)> {
    constants![
        XEN_PAGE_SHIFT,
        __HYPERVISOR_mmu_update,
        __HYPERVISOR_console_io,
        __HYPERVISOR_grant_table_op,
        __HYPERVISOR_xen_version,
        __HYPERVISOR_vcpu_op,
        __HYPERVISOR_mmuext_op,
        __HYPERVISOR_sched_op,
        __HYPERVISOR_event_channel_op,
        __HYPERVISOR_physdev_op,
        __HYPERVISOR_memory_op,
        __HYPERVISOR_multicall,
        __HYPERVISOR_update_va_mapping,
        __HYPERVISOR_set_callbacks,
        __HYPERVISOR_VIRT_START,
        __MACH2PHYS_VIRT_START,
        __MACH2PHYS_VIRT_END,
        DOMID_SELF,
        DOMID_INVALID,
        GNTTABOP_map_grant_ref,
        GNTTABOP_unmap_grant_ref,
        GNTTABOP_setup_table,
        GNTTABOP_copy,
        GNTTABOP_query_size,
        GNTMAP_host_map,
        GNTMAP_readonly,
        GNTCOPY_source_gref,
        GNTCOPY_dest_gref,
        GTF_permit_access,
        GTF_readonly,
        GTF_reading,
        GTF_writing,
        GNTST_okay,
        GNTST_bad_gntref,
        GNTST_bad_copy_arg,
        GNTST_eagain,
        EVTCHNOP_bind_interdomain,
        EVTCHNOP_bind_virq,
        EVTCHNOP_close,
        EVTCHNOP_send,
        EVTCHNOP_alloc_unbound,
        EVTCHNOP_unmask,
        SCHEDOP_yield,
        SCHEDOP_block,
        SCHEDOP_shutdown,
        SCHEDOP_poll,
        SHUTDOWN_poweroff,
        SHUTDOWN_crash,
        VIRQ_TIMER,
        BLKIF_OP_READ,
        BLKIF_OP_WRITE,
        BLKIF_OP_WRITE_BARRIER,
        BLKIF_OP_FLUSH_DISKCACHE,
        BLKIF_OP_DISCARD,
        BLKIF_OP_INDIRECT,
        BLKIF_RSP_EOPNOTSUPP,
        BLKIF_RSP_ERROR,
        BLKIF_RSP_OKAY,
        BLKIF_MAX_SEGMENTS_PER_REQUEST,
        BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST,
        BLKIF_DISCARD_SECURE,
        VDISK_CDROM,
        VDISK_READONLY,
        NETTXF_csum_blank,
        NETTXF_data_validated,
        NETTXF_more_data,
        NETTXF_extra_info,
        NETRXF_data_validated,
        NETRXF_csum_blank,
        NETRXF_more_data,
        NETRXF_extra_info,
        NETIF_RSP_DROPPED,
        NETIF_RSP_ERROR,
        NETIF_RSP_OKAY,
        NETIF_RSP_NULL,
        XEN_NETIF_EXTRA_TYPE_NONE,
        XEN_NETIF_EXTRA_TYPE_GSO,
        XEN_NETIF_EXTRA_TYPE_MCAST_ADD,
        XEN_NETIF_EXTRA_TYPE_MCAST_DEL,
        XEN_NETIF_EXTRA_FLAG_MORE,
        XEN_NETIF_GSO_TYPE_TCPV4,
        XEN_NETIF_GSO_TYPE_TCPV6,
        XEN_NETIF_MAX_TX_SIZE,
        XS_DIRECTORY,
        XS_READ,
        XS_WATCH,
        XS_UNWATCH,
        XS_TRANSACTION_START,
        XS_TRANSACTION_END,
        XS_WRITE,
        XS_MKDIR,
        XS_RM,
        XS_WATCH_EVENT,
        XS_ERROR,
        XS_RESET_WATCHES,
        XS_DIRECTORY_PART,
        XENSTORE_PAYLOAD_MAX,
        XENSTORE_RING_SIZE,
        XenbusStateUnknown,
        XenbusStateInitialising,
        XenbusStateInitWait,
        XenbusStateInitialised,
        XenbusStateConnected,
        XenbusStateClosing,
        XenbusStateClosed,
        XenbusStateReconfiguring,
        XenbusStateReconfigured,
    ]
}

const HEADERS: &[&str] = &[
    "xen/xen.h",
    "xen/grant_table.h",
    "xen/event_channel.h",
    "xen/sched.h",
    "xen/memory.h",
    "xen/physdev.h",
    "xen/vcpu.h",
    "xen/io/blkif.h",
    "xen/io/netif.h",
    "xen/io/xs_wire.h",
    "xen/io/xenbus.h",
    "xen/io/console.h",
    "xen/io/pciif.h",
];

/// Writes, builds with `gcc <mode>` and runs the C side; returns its lines.
fn c_layouts(
    name: &str,
    mode: &str,
    layouts: &[Layout],
    constants: &[(&str, i128)],
) -> BTreeMap<String, i128> {
    assert!(
        Path::new("/usr/include/xen/xen.h").exists(),
        "/usr/include/xen is missing: the layout test needs libxen-dev (apt-get install libxen-dev)"
    );
    let mut source = String::from(
        "#include <stdint.h>\n#include <stddef.h>\n#include <stdio.h>\n\
         #define __XEN_INTERFACE_VERSION__ __XEN_LATEST_INTERFACE_VERSION__\n\
         #define PRINT_VALUE(name, x) do { if ((x) < 0) \
         printf(\"value %s %lld\\n\", name, (long long)(x)); else \
         printf(\"value %s %llu\\n\", name, (unsigned long long)(x)); } while (0)\n",
    );
    for header in HEADERS {
        writeln!(source, "#include <{header}>").unwrap();
    }
    source.push_str("int main(void)\n{\n");
    for layout in layouts {
        let c_type = layout.c_type;
        writeln!(
            source,
            "    printf(\"size {c_type} %zu\\n\", sizeof({c_type}));"
        )
        .unwrap();
        for (field, _) in &layout.fields {
            writeln!(
                source,
                "    printf(\"offset {c_type}.{field} %zu\\n\", offsetof({c_type}, {field}));"
            )
            .unwrap();
        }
    }
    for (constant, _) in constants {
        writeln!(source, "    PRINT_VALUE(\"{constant}\", {constant});").unwrap();
    }
    source.push_str("    return 0;\n}\n");

    let directory = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let source_path = directory.join(format!("{name}.c"));
    let binary = directory.join(name);
    std::fs::write(&source_path, source).unwrap();
    let build = Command::new("gcc")
        .arg(mode)
        .args(["-std=gnu11", "-Wall", "-Werror", "-o"])
        .arg(&binary)
        .arg(&source_path)
        .output()
        .unwrap_or_else(|error| {
            panic!("cannot run gcc ({error}): the layout test needs gcc (apt-get install gcc)")
        });
    assert!(
        build.status.success(),
        "gcc {mode} failed on {} (for -m32, is gcc-multilib installed?):\n{}",
        source_path.display(),
        String::from_utf8_lossy(&build.stderr)
    );
    let run = Command::new(&binary)
        .output()
        .expect("cannot run the layout program");
    assert!(run.status.success(), "{} failed", binary.display());
    String::from_utf8(run.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let (key, value) = line.rsplit_once(' ').unwrap();
            (key.to_owned(), value.parse().unwrap())
        })
        .collect()
}

fn rust_layouts(layouts: &[Layout], constants: &[(&str, i128)]) -> BTreeMap<String, i128> {
    let mut lines = BTreeMap::new();
    for layout in layouts {
        lines.insert(format!("size {}", layout.c_type), layout.size as i128);
        for (field, offset) in &layout.fields {
            lines.insert(format!("offset {}.{field}", layout.c_type), *offset as i128);
        }
    }
    for (constant, value) in constants {
        lines.insert(format!("value {constant}"), *value);
    }
    lines
}

fn compare(abi: &str, c: BTreeMap<String, i128>, rust: BTreeMap<String, i128>) {
    assert_eq!(
        c.keys().collect::<Vec<_>>(),
        rust.keys().collect::<Vec<_>>(),
        "{abi}: the C program printed other lines than the Rust side lists"
    );
    let differences: Vec<String> = c
        .iter()
        .filter(|(key, value)| rust[*key] != **value)
        .map(|(key, value)| format!("{key}: gcc says {value}, Rust says {}", rust[key]))
        .collect();
    assert!(
        differences.is_empty(),
        "{abi}: {} layout differences:\n{}",
        differences.len(),
        differences.join("\n")
    );
}

#[test]
fn x86_64_layouts_match_gcc() {
    let layouts = x86_64_layouts();
    let constants = constants();
    let c = c_layouts("layout_x86_64", "-m64", &layouts, &constants);
    compare("x86_64", c, rust_layouts(&layouts, &constants));
}

#[test]
fn x86_32_blkif_layouts_match_gcc_m32() {
    let layouts = x86_32_layouts();
    let c = c_layouts("layout_x86_32", "-m32", &layouts, &[]);
    compare("x86_32", c, rust_layouts(&layouts, &[]));
}

#[test]
fn the_two_blkif_abis_differ_where_the_header_says() {
    // The facts the x86_32 module exists for, stated independently of any
    // compiler: uint64_t is 4-byte aligned in i386 structs.
    use xen_abi::blkif::{x86_32, x86_64};
    assert_eq!(size_of::<x86_64::blkif_request>(), 112);
    assert_eq!(size_of::<x86_32::blkif_request>(), 108);
    assert_eq!(offset_of!(x86_64::blkif_request, id), 8);
    assert_eq!(offset_of!(x86_32::blkif_request, id), 4);
    assert_eq!(size_of::<x86_64::blkif_response>(), 16);
    assert_eq!(size_of::<x86_32::blkif_response>(), 12);
    assert_eq!(x86_64::SLOT_SIZE, 112);
    // The request is the larger member of the slot union in both ABIs.
    assert_eq!(x86_32::SLOT_SIZE, 108);
    assert_eq!(xen_abi::netif::TX_SLOT_SIZE, 12);
    assert_eq!(xen_abi::netif::RX_SLOT_SIZE, 8);
    assert_eq!(XEN_PAGE_SIZE, 4096);
}
