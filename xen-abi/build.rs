//! Generates the Rust view of Xen's public headers with bindgen.
//!
//! Two runs over Debian's libxen-dev headers in `/usr/include/xen`:
//!
//! * `xen_x86_64.rs`: the x86_64 ABI of every header this crate covers,
//!   with bindgen's layout assertions.
//! * `blkif_x86_32.rs`: `io/blkif.h` as a 32-bit x86 guest (GNU Mach)
//!   lays it out, where `uint64_t` inside a struct is only 4-byte aligned.
//!
//! The build script runs on the host whatever the crate's target is
//! (`x86_64-unknown-none` included), so clang is always told the target
//! explicitly.

use std::env;
use std::path::{Path, PathBuf};

use bindgen::callbacks::{IntKind, ParseCallbacks};

/// Where Debian's libxen-dev installs the public headers.
const XEN_INCLUDE: &str = "/usr/include";

/// The interface version Xen's own tools build with (`__XEN_LATEST_INTERFACE_VERSION__`
/// in `xen-compat.h`): no legacy aliases, current names and layouts.
const INTERFACE_VERSION: &str = "-D__XEN_INTERFACE_VERSION__=__XEN_LATEST_INTERFACE_VERSION__";

/// The headers the crate covers, in include order.
const HEADERS: &[&str] = &[
    "xen/xen.h",
    "xen/arch-x86/xen.h",
    "xen/grant_table.h",
    "xen/event_channel.h",
    "xen/sched.h",
    "xen/memory.h",
    "xen/physdev.h",
    "xen/vcpu.h",
    "xen/io/ring.h",
    "xen/io/blkif.h",
    "xen/io/netif.h",
    "xen/io/xs_wire.h",
    "xen/io/xenbus.h",
    "xen/io/console.h",
    "xen/io/pciif.h",
];

/// Gives constants from `#define`s the Rust type of the fields they are
/// stored in, so callers compare without casts.
#[derive(Debug)]
struct ConstantTypes;

impl ParseCallbacks for ConstantTypes {
    fn int_macro(&self, name: &str, _value: i64) -> Option<IntKind> {
        const TYPED_PREFIXES: &[(&str, IntKind)] = &[
            // domid_t
            ("DOMID_", IntKind::U16),
            // Addresses above 2^63, which would otherwise come out negative.
            ("__HYPERVISOR_VIRT_", IntKind::U64),
            ("__MACH2PHYS_VIRT_", IntKind::U64),
            // blkif_request.operation
            ("BLKIF_OP_", IntKind::U8),
            // blkif_response.status
            ("BLKIF_RSP_", IntKind::I16),
            // netif_tx_request.flags, netif_rx_response.flags
            ("NETTXF_", IntKind::U16),
            ("NETRXF_", IntKind::U16),
            // netif_tx_response.status, netif_rx_response.status
            ("NETIF_RSP_", IntKind::I16),
            // netif_extra_info.type and .flags
            ("XEN_NETIF_EXTRA_TYPE_", IntKind::U8),
            ("XEN_NETIF_EXTRA_FLAG_", IntKind::U8),
            ("XEN_NETIF_GSO_TYPE_", IntKind::U8),
            // grant_entry_v1.flags
            ("GTF_", IntKind::U16),
            // gnttab_*.status
            ("GNTST_", IntKind::I16),
            // gnttab_copy.flags
            ("GNTCOPY_", IntKind::U16),
            // gnttab_map_grant_ref.flags
            ("GNTMAP_", IntKind::U32),
        ];
        TYPED_PREFIXES
            .iter()
            .find(|(prefix, _)| name.starts_with(prefix))
            .map(|(_, kind)| *kind)
    }
}

fn builder(clang_target: &str) -> bindgen::Builder {
    bindgen::Builder::default()
        .clang_arg(format!("--target={clang_target}"))
        .clang_arg(format!("-I{XEN_INCLUDE}"))
        .clang_arg(INTERFACE_VERSION)
        .use_core()
        .ctypes_prefix("core::ffi")
        // Plain data only: no inline functions (the FLEX ring helpers) and
        // no extern statics (`xsd_errors[]` is a static table in a header).
        .with_codegen_config(bindgen::CodegenConfig::TYPES | bindgen::CodegenConfig::VARS)
        .blocklist_var("xsd_errors")
        // Constants wrapped in `xen_mk_uint()` and friends need clang to evaluate.
        .clang_macro_fallback()
        .prepend_enum_name(false)
        .default_enum_style(bindgen::EnumVariation::Consts)
        .derive_default(false)
        .derive_debug(true)
        .derive_eq(true)
        .derive_hash(false)
        .impl_debug(false)
        .generate_comments(true)
        .parse_callbacks(Box::new(ConstantTypes))
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
}

/// Writes a header including `headers` into `OUT_DIR` and returns its path.
/// A real file rather than in-memory contents: bindgen's clang macro
/// fallback (needed for `DOMID_SELF` and the like) evaluates nothing for
/// in-memory headers.
fn wrapper(out_dir: &Path, name: &str, headers: &[&str]) -> String {
    let mut text = String::from("#include <stdint.h>\n");
    for header in headers {
        text.push_str(&format!("#include <{header}>\n"));
    }
    let path = out_dir.join(name);
    std::fs::write(&path, text)
        .unwrap_or_else(|error| panic!("cannot write {}: {error}", path.display()));
    path.to_str().expect("OUT_DIR is UTF-8").to_owned()
}

fn generate(builder: bindgen::Builder, output: &Path, post_process: fn(String) -> String) {
    let code = builder
        .generate()
        .unwrap_or_else(|error| panic!("bindgen failed for {}: {error}", output.display()))
        .to_string();
    std::fs::write(output, post_process(code))
        .unwrap_or_else(|error| panic!("cannot write {}: {error}", output.display()));
}

/// Gives every struct and union the i386 System V alignment rule when the
/// code is compiled for x86_64.
///
/// bindgen computes the i386 offsets but emits plain `#[repr(C)]`, and
/// `#[repr(C)]` on x86_64 aligns `u64` to 8: `blkif_request.id` would move
/// from offset 4 to 8 and the struct from 108 to 112 bytes. On i386 no
/// scalar in these headers is aligned beyond 4, so capping every field's
/// alignment at 4 with `packed(4)` reproduces the i386 layout exactly; the
/// layout assertions bindgen emits (i386 sizes and offsets) check it at
/// compile time.
fn i386_alignment(code: String) -> String {
    let packed = code.replace("#[repr(C)]", "#[repr(C, packed(4))]");
    assert!(
        !packed.contains("#[repr(align"),
        "an explicitly aligned type cannot be packed; handle it before generating"
    );
    packed
}

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed=build.rs");

    generate(
        builder("x86_64-unknown-linux-gnu")
            .header(wrapper(&out_dir, "xen-abi-x86_64.h", HEADERS))
            .allowlist_file(format!("{XEN_INCLUDE}/xen/.*"))
            // A flexible array member; bindgen's accessor for it is unsafe
            // and nothing here needs the structure.
            .blocklist_type("(__guest_handle_(const_)?)?physdev_pci_device_add(_t)?")
            .layout_tests(true),
        &out_dir.join("xen_x86_64.rs"),
        |code| code,
    );

    generate(
        builder("i686-unknown-linux-gnu")
            .header(wrapper(
                &out_dir,
                "xen-abi-blkif-x86_32.h",
                &["xen/io/blkif.h"],
            ))
            .allowlist_type("blkif_.*")
            // The private halves hold a pointer to the shared ring: 4 bytes
            // on i386, meaningless in an x86_64 process.
            .blocklist_type("blkif_(front|back)_ring(_t)?")
            .layout_tests(true),
        &out_dir.join("blkif_x86_32.rs"),
        i386_alignment,
    );
}
