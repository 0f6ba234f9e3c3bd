//! `rumpcomp_pci_*` conformance: drives the PCI hypercalls through
//! `extern "C"` declarations written from NetBSD's `pci_user.h`, the way
//! `librumpdev_pci` calls them, over a fake PCI host (`rumpuser_support::pci`)
//! and the std-thread rumpuser host with its fake rump kernel.

mod rumpuser_support;

use std::ffi::{c_int, c_uint, c_ulong, c_void};
use std::mem::{offset_of, size_of};
use std::ptr;
use std::sync::Mutex;

use rumpuser_support::pci::{c, FakePci, PciEvent, OTHER_MACHINE_OFFSET};
use rumpuser_support::{curlwp, host_thread, kernel, Rig, Upcall};
use rumpuser_xen::rumpuser::abi::errno::{EINVAL, EIO, ENOMEM, ENXIO};
use rumpuser_xen::rumpuser::abi::RUMPUSER_CLOCK_RELWALL;
use rumpuser_xen::rumpuser::install_pci_host;
use rumpuser_xen::rumpuser::pci::{PciFunction, RumpcompPciDmaseg};

const PAGE: usize = 4096;

/// The fake of the running scenario, for the interrupt handlers.
static FAKE: Mutex<Option<&'static FakePci>> = Mutex::new(None);

/// A rig with one rump CPU and a fake PCI host installed.
fn start() -> (Rig, &'static FakePci) {
    let rig = Rig::start(1);
    let fake = FakePci::new(rig.host);
    install_pci_host(fake);
    *FAKE.lock().unwrap() = Some(fake);
    HANDLED.lock().unwrap().clear();
    (rig, fake)
}

fn confread(bus: c_uint, device: c_uint, function: c_uint, register: c_int) -> (c_int, c_uint) {
    let mut value: c_uint = 0x1234_5678;
    // SAFETY: a writable out-pointer.
    let error = unsafe { c::rumpcomp_pci_confread(bus, device, function, register, &mut value) };
    (error, value)
}

fn dmalloc(size: usize, align: usize) -> Result<(u64, usize), c_int> {
    let (mut machine, mut virtual_address): (c_ulong, c_ulong) = (0, 0);
    // SAFETY: writable out-pointers.
    let error = unsafe { c::rumpcomp_pci_dmalloc(size, align, &mut machine, &mut virtual_address) };
    if error == 0 {
        Ok((machine, virtual_address as usize))
    } else {
        Err(error)
    }
}

fn virt_to_mach(address: usize) -> u64 {
    // SAFETY: translation only; the layer does not dereference it.
    unsafe { c::rumpcomp_pci_virt_to_mach(address as *mut c_void) }
}

fn sleep_seconds(seconds: i64) {
    // SAFETY: no pointers.
    let error =
        unsafe { rumpuser_support::c::rumpuser_clock_sleep(RUMPUSER_CLOCK_RELWALL, seconds, 0) };
    assert_eq!(error, 0);
}

const fn function(bus: u8, device: u8, function: u8) -> PciFunction {
    PciFunction {
        bus,
        device,
        function,
    }
}

#[test]
fn confread_reaches_the_named_function() {
    let (_rig, fake) = start();
    fake.add_function(0, 3, 0, 0x8086, 0x100e);
    fake.add_function(1, 3, 0, 0x1af4, 0x1041);
    fake.add_function(0, 3, 2, 0x10ec, 0x8139);
    assert_eq!(confread(0, 3, 0, 0), (0, 0x100e_8086));
    assert_eq!(confread(1, 3, 0, 0), (0, 0x1041_1af4));
    assert_eq!(confread(0, 3, 2, 0), (0, 0x8139_10ec));
    assert_eq!(confread(0, 3, 0, 0x40), (0, 0));
    assert_eq!(confread(0, 3, 0, 0xffc), (0, 0));
}

#[test]
fn an_absent_function_reads_all_ones() {
    let (_rig, fake) = start();
    fake.add_function(0, 3, 0, 0x8086, 0x100e);
    // What NetBSD's bus scan checks: the vendor id of a missing function
    // reads 0xffff (pci_conf_read ignores the error code).
    assert_eq!(confread(0, 4, 0, 0), (ENXIO, 0xffff_ffff));
    assert_eq!(confread(0, 3, 1, 0), (ENXIO, 0xffff_ffff));
    assert_eq!(confread(2, 3, 0, 0), (ENXIO, 0xffff_ffff));
    // Out of range addresses are absent too, not another function.
    assert_eq!(confread(0, 3 + 32, 0, 0), (ENXIO, 0xffff_ffff));
    assert_eq!(confread(0, 3, 8, 0), (ENXIO, 0xffff_ffff));
    assert_eq!(confread(256, 3, 0, 0), (ENXIO, 0xffff_ffff));
    // Registers that are not 32-bit ones inside config space.
    assert_eq!(confread(0, 3, 0, 2), (EINVAL, 0xffff_ffff));
    assert_eq!(confread(0, 3, 0, 4096), (EINVAL, 0xffff_ffff));
    assert_eq!(confread(0, 3, 0, -4), (EINVAL, 0xffff_ffff));
}

#[test]
fn confwrite_reaches_the_named_function() {
    let (_rig, fake) = start();
    fake.add_function(0, 3, 0, 0x8086, 0x100e);
    fake.add_function(0, 5, 0, 0x8086, 0x100e);
    // SAFETY: no pointers.
    let error = unsafe { c::rumpcomp_pci_confwrite(0, 5, 0, 4, 0x0000_0106) };
    assert_eq!(error, 0);
    assert_eq!(
        fake.config_writes(),
        vec![(function(0, 5, 0), 4, 0x0000_0106)]
    );
    assert_eq!(fake.config_word(function(0, 5, 0), 4), 0x106);
    assert_eq!(fake.config_word(function(0, 3, 0), 4), 0);
    assert_eq!(confread(0, 5, 0, 4), (0, 0x106));
    // SAFETY: no pointers.
    unsafe {
        assert_eq!(c::rumpcomp_pci_confwrite(0, 6, 0, 4, 1), ENXIO);
        assert_eq!(c::rumpcomp_pci_confwrite(0, 5, 0, 5, 1), EINVAL);
        assert_eq!(c::rumpcomp_pci_confwrite(0, 5, 0, 4096, 1), EINVAL);
    }
    assert_eq!(fake.config_writes().len(), 1);
}

#[test]
fn map_returns_the_mapping_of_the_bar() {
    let (_rig, fake) = start();
    let registers = fake.add_bar(0xfebf_0000, 0x2_0000);
    // SAFETY: mapping requests only.
    unsafe {
        let mapped = c::rumpcomp_pci_map(0xfebf_0000, 0x2_0000);
        assert_eq!(mapped as usize, registers);
        // The rump kernel's bus_space writes land in the device.
        (mapped.cast::<u8>().add(0x100) as *mut u32).write_volatile(0xdead_beef);
        assert_eq!(
            ((registers + 0x100) as *const u32).read_volatile(),
            0xdead_beef
        );
        // Part of a mapped range: the same addresses, no new mapping.
        let inner = c::rumpcomp_pci_map(0xfebf_1000, 0x100);
        assert_eq!(inner as usize, registers + 0x1000);
        assert_eq!(fake.map_calls(), vec![(0xfebf_0000, 0x2_0000)]);
        // Device memory the host does not have, and nothing at all.
        assert!(c::rumpcomp_pci_map(0xfed0_0000, 0x1000).is_null());
        assert!(c::rumpcomp_pci_map(0xfebf_0000, 0).is_null());
        assert!(c::rumpcomp_pci_map(c_ulong::MAX - 0xfff, 0x2000).is_null());
    }
    assert_eq!(fake.map_calls().len(), 2);
}

fn within_boundary(address: u64, length: usize, boundary: usize) -> bool {
    address / boundary as u64 == (address + length as u64 - 1) / boundary as u64
}

#[test]
fn dmalloc_honours_alignment_and_boundary() {
    let (_rig, fake) = start();
    let sizes = [1, PAGE, 3 * PAGE, 5 * PAGE + 7, 64 * 1024, 200 * 1024];
    let mut alignment = PAGE;
    while alignment <= 2 << 20 {
        for size in sizes {
            let (machine, virtual_address) = dmalloc(size, alignment).expect("memory");
            let length = size.next_multiple_of(PAGE);
            let boundary = length.next_power_of_two();
            assert_eq!(
                machine % alignment as u64,
                0,
                "{size:#x} aligned {alignment:#x}"
            );
            assert!(
                within_boundary(machine, length, boundary),
                "{size:#x} at {machine:#x} crosses a {boundary:#x} boundary"
            );
            assert_eq!(virt_to_mach(virtual_address), machine);
            // The whole rounded length is there, zeroed, and ours.
            // SAFETY: `length` bytes at `virtual_address` were just
            // allocated for us.
            let memory =
                unsafe { std::slice::from_raw_parts_mut(virtual_address as *mut u8, length) };
            assert!(memory.iter().all(|&byte| byte == 0));
            memory.fill(0xa5);
            // SAFETY: the allocation just made, freed once.
            unsafe { c::rumpcomp_pci_dmafree(virtual_address as c_ulong, size) };
        }
        alignment *= 2;
    }
    assert!(fake.live_dma().is_empty());
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[test]
fn dmalloc_defaults_to_page_alignment_and_refuses_nonsense() {
    let (_rig, fake) = start();
    let (machine, _) = dmalloc(100, 0).expect("memory");
    assert_eq!(machine % PAGE as u64, 0);
    let (machine, _) = dmalloc(100, 64).expect("memory");
    assert_eq!(machine % PAGE as u64, 0);
    assert_eq!(
        fake.dma_requests(),
        vec![(PAGE, PAGE, PAGE), (PAGE, PAGE, PAGE)]
    );
    assert_eq!(dmalloc(0, PAGE), Err(EINVAL));
    assert_eq!(dmalloc(PAGE, 3 * PAGE), Err(EINVAL));
    assert_eq!(dmalloc(usize::MAX - 10, PAGE), Err(ENOMEM));
    // More than the host has.
    assert_eq!(dmalloc(64 << 20, PAGE), Err(ENOMEM));
}

#[test]
fn dmalloc_refuses_memory_the_host_placed_wrongly() {
    let (_rig, fake) = start();
    fake.misplace_dma();
    assert_eq!(dmalloc(2 * PAGE, 64 * 1024), Err(ENOMEM));
    // Given back, not leaked.
    assert!(fake.live_dma().is_empty());
    assert_eq!(fake.freed().len(), 1);
}

#[test]
fn dmafree_returns_the_memory() {
    let (rig, fake) = start();
    let (machine, virtual_address) = dmalloc(3 * PAGE, PAGE).expect("memory");
    let (other_machine, other) = dmalloc(PAGE, PAGE).expect("memory");
    assert_eq!(fake.live_dma().len(), 2);
    // SAFETY: the first allocation, freed with the size asked for.
    unsafe { c::rumpcomp_pci_dmafree(virtual_address as c_ulong, 3 * PAGE) };
    let freed = fake.freed();
    assert_eq!(freed.len(), 1);
    assert_eq!(freed[0].0.virtual_address, virtual_address);
    assert_eq!(freed[0].0.machine_address, machine);
    assert_eq!(freed[0].1, 3 * PAGE);
    assert_eq!(fake.live_dma(), vec![(other, other_machine, PAGE)]);
    // No longer DMA memory: translated by the host like any other address.
    assert_eq!(
        virt_to_mach(virtual_address),
        virtual_address as u64 + OTHER_MACHINE_OFFSET
    );
    // A second free, a wrong size and a stranger are refused, loudly.
    // SAFETY: the layer must not pass these to the host.
    unsafe {
        c::rumpcomp_pci_dmafree(virtual_address as c_ulong, 3 * PAGE);
        c::rumpcomp_pci_dmafree(other as c_ulong, 2 * PAGE);
        c::rumpcomp_pci_dmafree(0x1000, PAGE);
    }
    assert_eq!(fake.freed().len(), 1);
    assert!(rig.host.console_text().contains("rumpcomp_pci_dmafree"));
    // SAFETY: the second allocation, freed once.
    unsafe { c::rumpcomp_pci_dmafree(other as c_ulong, PAGE) };
    assert!(fake.live_dma().is_empty());
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[test]
fn virt_to_mach_round_trips() {
    let (_rig, _fake) = start();
    let (machine, virtual_address) = dmalloc(5 * PAGE, 16 * 1024).expect("memory");
    for offset in [0, 1, PAGE - 1, PAGE, 3 * PAGE + 17, 5 * PAGE - 1] {
        assert_eq!(
            virt_to_mach(virtual_address + offset),
            machine + offset as u64
        );
    }
    // Memory that is not from dmalloc is the host's to translate.
    let local = 0u64;
    let address = &local as *const u64 as usize;
    assert_eq!(virt_to_mach(address), address as u64 + OTHER_MACHINE_OFFSET);
    assert_eq!(
        virt_to_mach(virtual_address + 5 * PAGE),
        (virtual_address + 5 * PAGE) as u64 + OTHER_MACHINE_OFFSET
    );
}

fn dmamem_map(segments: &mut [RumpcompPciDmaseg], totlen: usize) -> Result<usize, c_int> {
    let mut mapped = ptr::null_mut();
    // SAFETY: `segments.len()` segments and a writable out-pointer.
    let error = unsafe {
        c::rumpcomp_pci_dmamem_map(segments.as_mut_ptr(), segments.len(), totlen, &mut mapped)
    };
    if error == 0 {
        Ok(mapped as usize)
    } else {
        Err(error)
    }
}

fn segment(machine: u64, length: usize, virtual_address: usize) -> RumpcompPciDmaseg {
    RumpcompPciDmaseg {
        ds_pa: machine,
        ds_len: length as c_ulong,
        ds_vacookie: virtual_address as c_ulong,
    }
}

#[test]
fn dmamem_map_gives_the_mapping_of_dmalloc_memory() {
    let (_rig, _fake) = start();
    let (machine, virtual_address) = dmalloc(3 * PAGE, PAGE).expect("memory");
    let (other_machine, other) = dmalloc(PAGE, PAGE).expect("memory");
    // One segment, as bus_dmamem_alloc makes of contiguous memory.
    assert_eq!(
        dmamem_map(&mut [segment(machine, 3 * PAGE, virtual_address)], 3 * PAGE),
        Ok(virtual_address)
    );
    // The same memory in page-sized segments.
    let mut pages: Vec<_> = (0..3)
        .map(|page| {
            segment(
                machine + (page * PAGE) as u64,
                PAGE,
                virtual_address + page * PAGE,
            )
        })
        .collect();
    assert_eq!(dmamem_map(&mut pages, 3 * PAGE), Ok(virtual_address));
    // Pieces of two allocations cannot be one mapping.
    assert_eq!(
        dmamem_map(
            &mut [
                segment(machine, PAGE, virtual_address),
                segment(other_machine, PAGE, other)
            ],
            2 * PAGE
        ),
        Err(EINVAL)
    );
    // A machine address that is not the segment's.
    assert_eq!(
        dmamem_map(
            &mut [segment(machine + 1, 3 * PAGE, virtual_address)],
            3 * PAGE
        ),
        Err(EINVAL)
    );
    // Beyond the allocation, or more than the segments hold.
    assert_eq!(
        dmamem_map(&mut [segment(machine, 4 * PAGE, virtual_address)], 4 * PAGE),
        Err(EINVAL)
    );
    assert_eq!(
        dmamem_map(&mut [segment(machine, 2 * PAGE, virtual_address)], 3 * PAGE),
        Err(EINVAL)
    );
    // Memory that is not from dmalloc, and no segments.
    let local = [0u8; 16];
    assert_eq!(
        dmamem_map(&mut [segment(0x1000, PAGE, local.as_ptr() as usize)], PAGE),
        Err(EINVAL)
    );
    assert_eq!(dmamem_map(&mut [], 0), Err(EINVAL));
}

/// What each handler call saw: (tag, thread, held a CPU, had an lwp).
static HANDLED: Mutex<Vec<(usize, usize, bool, bool)>> = Mutex::new(Vec::new());

unsafe extern "C" fn handler(argument: *mut c_void) -> c_int {
    let tag = argument as usize;
    let me = host_thread();
    let holds_cpu = kernel().holders.contains(&me);
    let has_lwp = !curlwp().is_null();
    HANDLED.lock().unwrap().push((tag, me, holds_cpu, has_lwp));
    let fake = FAKE.lock().unwrap().expect("a fake");
    fake.note(PciEvent::Handled(tag));
    1
}

fn establish(cookie: c_uint, tag: usize) -> *mut c_void {
    // SAFETY: a handler that stays callable; its argument is a tag.
    unsafe { c::rumpcomp_pci_irq_establish(cookie, Some(handler), tag as *mut c_void) }
}

#[test]
fn an_interrupt_runs_its_handler_on_a_rump_thread_holding_a_cpu() {
    let (rig, fake) = start();
    fake.add_function(0, 3, 0, 0x8086, 0x100e);
    // SAFETY: no pointers.
    assert_eq!(unsafe { c::rumpcomp_pci_irq_map(0, 3, 0, 11, 1) }, 0);
    assert!(!establish(1, 7).is_null());
    // The interrupt thread starts and waits; nothing runs without an
    // interrupt.
    sleep_seconds(1);
    assert!(HANDLED.lock().unwrap().is_empty());
    fake.fire(11);
    sleep_seconds(1);
    let handled = HANDLED.lock().unwrap().clone();
    assert_eq!(handled.len(), 1, "{handled:?}");
    let (tag, thread, holds_cpu, has_lwp) = handled[0];
    assert_eq!(tag, 7);
    assert_ne!(
        thread, 0,
        "the handler ran on the thread that established it"
    );
    assert!(holds_cpu, "the handler ran without a rump kernel CPU");
    assert!(has_lwp, "the handler ran without an lwp");
    // The interrupt is unmasked only after its handler ran.
    assert_eq!(
        fake.events(),
        vec![
            PciEvent::Bound(function(0, 3, 0), 11, 0),
            PciEvent::Fired(11),
            PciEvent::Handled(7),
            PciEvent::Unmasked(0),
        ]
    );
    // And fires again.
    fake.fire(11);
    sleep_seconds(1);
    let handled = HANDLED.lock().unwrap().clone();
    assert_eq!(handled.len(), 2, "{handled:?}");
    assert_eq!(handled[1], handled[0]);
    // The interrupt thread took its lwp like the rump kernel's own
    // threads, and took and released CPUs in pairs.
    let log = rig.take_log();
    assert!(log.contains(&Upcall::NewLwp(thread)), "{log:?}");
    let takes = log
        .iter()
        .filter(|upcall| matches!(upcall, Upcall::BackendSchedule(who, ..) if *who == thread))
        .count();
    let releases = log
        .iter()
        .filter(|upcall| matches!(upcall, Upcall::BackendUnschedule(who, _) if *who == thread))
        .count();
    assert_eq!((takes, releases), (2, 2), "{log:?}");
    rig.assert_no_violations();
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[test]
fn a_shared_line_is_bound_once_and_runs_every_handler() {
    let (rig, fake) = start();
    fake.add_function(0, 3, 0, 0x8086, 0x100e);
    fake.add_function(0, 4, 0, 0x8086, 0x100e);
    fake.add_function(0, 5, 0, 0x8086, 0x100e);
    // SAFETY: no pointers.
    unsafe {
        assert_eq!(c::rumpcomp_pci_irq_map(0, 3, 0, 5, 1), 0);
        assert_eq!(c::rumpcomp_pci_irq_map(0, 4, 0, 5, 2), 0);
        assert_eq!(c::rumpcomp_pci_irq_map(0, 5, 0, 9, 3), 0);
    }
    assert!(!establish(1, 10).is_null());
    assert!(!establish(2, 20).is_null());
    assert!(!establish(3, 30).is_null());
    fake.fire(5);
    sleep_seconds(1);
    let tags: Vec<usize> = HANDLED.lock().unwrap().iter().map(|call| call.0).collect();
    assert_eq!(tags, vec![10, 20]);
    fake.fire(9);
    sleep_seconds(1);
    let tags: Vec<usize> = HANDLED.lock().unwrap().iter().map(|call| call.0).collect();
    assert_eq!(tags, vec![10, 20, 30]);
    let bound = fake
        .events()
        .iter()
        .filter(|event| matches!(event, PciEvent::Bound(..)))
        .count();
    assert_eq!(bound, 2);
    rig.assert_no_violations();
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());
}

#[test]
fn irq_establish_refuses_what_irq_map_did_not_accept() {
    let (_rig, fake) = start();
    fake.add_function(0, 3, 0, 0x8086, 0x100e);
    // SAFETY: no pointers.
    unsafe {
        assert_eq!(c::rumpcomp_pci_irq_map(0, 3, 0, 0, 1), EINVAL);
        assert_eq!(c::rumpcomp_pci_irq_map(0, 3, 0, 255, 2), EINVAL);
        assert_eq!(c::rumpcomp_pci_irq_map(0, 3, 0, -1, 3), EINVAL);
        assert_eq!(c::rumpcomp_pci_irq_map(0, 32, 0, 11, 4), ENXIO);
        // A function the host does not have: mapped, but cannot be bound.
        assert_eq!(c::rumpcomp_pci_irq_map(0, 9, 0, 11, 5), 0);
        assert!(c::rumpcomp_pci_irq_establish(5, None, ptr::null_mut()).is_null());
    }
    for cookie in [1, 2, 3, 4, 5, 99] {
        assert!(establish(cookie, 1).is_null(), "cookie {cookie}");
    }
    assert!(fake.events().is_empty(), "{:?}", fake.events());
}

#[test]
fn iospace_init_asks_the_host() {
    let (_rig, fake) = start();
    // SAFETY: no arguments.
    assert_eq!(unsafe { c::rumpcomp_pci_iospace_init() }, 0);
    assert_eq!(fake.io_port_calls(), 1);
    fake.refuse_io_ports();
    // SAFETY: no arguments.
    assert_eq!(unsafe { c::rumpcomp_pci_iospace_init() }, EIO);
    assert_eq!(fake.io_port_calls(), 2);
}

#[test]
fn dmaseg_has_the_layout_of_pci_user_h() {
    // struct rumpcomp_pci_dmaseg { unsigned long ds_pa, ds_len, ds_vacookie; }
    assert_eq!(size_of::<RumpcompPciDmaseg>(), 3 * size_of::<c_ulong>());
    assert_eq!(offset_of!(RumpcompPciDmaseg, ds_pa), 0);
    assert_eq!(offset_of!(RumpcompPciDmaseg, ds_len), size_of::<c_ulong>());
    assert_eq!(
        offset_of!(RumpcompPciDmaseg, ds_vacookie),
        2 * size_of::<c_ulong>()
    );
}

/// Ties each declaration of `rumpuser_support::pci::c`, written from
/// `pci_user.h`, to the Rust function that defines the symbol.
#[test]
fn every_definition_has_the_signature_of_pci_user_h() {
    use rumpuser_xen::rumpuser::pci as p;
    rumpuser_support::same_signature! {
        rumpcomp_pci_map = p::rumpcomp_pci_map, (_, _);
        rumpcomp_pci_confread = p::rumpcomp_pci_confread, (_, _, _, _, _);
        rumpcomp_pci_confwrite = p::rumpcomp_pci_confwrite, (_, _, _, _, _);
        rumpcomp_pci_irq_map = p::rumpcomp_pci_irq_map, (_, _, _, _, _);
        rumpcomp_pci_irq_establish = p::rumpcomp_pci_irq_establish, (_, _, _);
        rumpcomp_pci_dmalloc = p::rumpcomp_pci_dmalloc, (_, _, _, _);
        rumpcomp_pci_dmafree = p::rumpcomp_pci_dmafree, (_, _);
        rumpcomp_pci_dmamem_map = p::rumpcomp_pci_dmamem_map, (_, _, _, _);
        rumpcomp_pci_virt_to_mach = p::rumpcomp_pci_virt_to_mach, (_);
        rumpcomp_pci_iospace_init = p::rumpcomp_pci_iospace_init, ();
    }
}
