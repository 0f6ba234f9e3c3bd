//! Grant table rules: every GNTTABOP_copy rejection, map and unmap.

use xen_ring::SharedMemory;
use xenbus::platform::{CopyOp, GrantCopy, GrantError, GrantMap, GrantSpan, DOMID_SELF};
use xensim::{
    Domain, EndAccessError, GrantEntry, Hypervisor, SimConfig, GTF_PERMIT_ACCESS, GTF_READING,
    GTF_READONLY, GTF_WRITING, PAGE_SIZE,
};

/// A frontend with one granted page holding 0..=255 repeated, and a backend.
struct Pair {
    xen: Hypervisor,
    frontend: Domain,
    backend: Domain,
    gref: u32,
    page: xensim::Page,
}

fn pair(readonly: bool) -> Pair {
    let xen = Hypervisor::new();
    let frontend = xen.create_domain("guest");
    let backend = xen.create_domain("driver");
    let (gfn, page) = frontend.alloc_page();
    let pattern: Vec<u8> = (0..PAGE_SIZE).map(|i| i as u8).collect();
    page.write(0, &pattern);
    let gref = frontend
        .grant_access(backend.domid(), gfn, readonly)
        .unwrap();
    Pair {
        xen,
        frontend,
        backend,
        gref,
        page,
    }
}

fn span(domid: u16, gref: u32, offset: u16) -> GrantSpan {
    GrantSpan {
        domid,
        gref,
        offset,
    }
}

fn copy_from(backend: &Domain, source: GrantSpan, length: usize) -> Result<Vec<u8>, GrantError> {
    let mut buffer = vec![0; length];
    let mut ops = [CopyOp::FromGrant {
        source,
        destination: &mut buffer,
    }];
    let mut status = [Ok(())];
    backend.clone().copy(&mut ops, &mut status);
    status[0].map(|()| buffer)
}

fn copy_to(backend: &Domain, destination: GrantSpan, bytes: &[u8]) -> Result<(), GrantError> {
    let mut ops = [CopyOp::ToGrant {
        source: bytes,
        destination,
    }];
    let mut status = [Ok(())];
    backend.clone().copy(&mut ops, &mut status);
    status[0]
}

#[test]
fn copy_from_and_to_a_grant() {
    let p = pair(false);
    let bytes = copy_from(&p.backend, span(p.frontend.domid(), p.gref, 10), 20).unwrap();
    assert_eq!(bytes, (10..30).map(|i| i as u8).collect::<Vec<_>>());
    copy_to(
        &p.backend,
        span(p.frontend.domid(), p.gref, 4090),
        b"abcdef",
    )
    .unwrap();
    let mut back = [0; 6];
    p.page.read(4090, &mut back);
    assert_eq!(&back, b"abcdef");
    // Pins are gone once the copy is done.
    let entry = p.frontend.grant_entry(p.gref).unwrap();
    assert_eq!(entry.flags & (GTF_READING | GTF_WRITING), 0);
}

#[test]
fn copy_of_length_zero_is_not_checked() {
    let p = pair(false);
    assert_eq!(
        copy_from(&p.backend, span(999, 1 << 30, 5000), 0),
        Ok(vec![])
    );
}

#[test]
fn copy_rejects_gref_past_table_end() {
    let p = pair(false);
    let size = p.frontend.grant_table_size();
    assert_eq!(
        copy_from(&p.backend, span(p.frontend.domid(), size, 0), 8),
        Err(GrantError::BadGntref)
    );
    assert_eq!(
        copy_from(&p.backend, span(p.frontend.domid(), u32::MAX, 0), 8),
        Err(GrantError::BadGntref)
    );
}

#[test]
fn copy_rejects_unknown_domain() {
    let p = pair(false);
    assert_eq!(
        copy_from(&p.backend, span(77, p.gref, 0), 8),
        Err(GrantError::BadDomain)
    );
    assert_eq!(
        copy_to(&p.backend, span(77, p.gref, 0), b"x"),
        Err(GrantError::BadDomain)
    );
}

#[test]
fn copy_rejects_domain_checked_before_gref() {
    let p = pair(false);
    // Both wrong: the domain is looked up first, as in gnttab_copy_lock_domains.
    assert_eq!(
        copy_from(&p.backend, span(77, u32::MAX, 0), 8),
        Err(GrantError::BadDomain)
    );
}

#[test]
fn copy_rejects_grant_given_to_another_domain() {
    let p = pair(false);
    let third = p.xen.create_domain("other");
    // Xen reports this from _set_status_v1 as GNTST_general_error.
    assert_eq!(
        copy_from(&third, span(p.frontend.domid(), p.gref, 0), 8),
        Err(GrantError::GeneralError)
    );
    assert_eq!(
        copy_to(&third, span(p.frontend.domid(), p.gref, 0), b"x"),
        Err(GrantError::GeneralError)
    );
}

#[test]
fn copy_rejects_offset_plus_length_past_the_page() {
    let p = pair(false);
    let domid = p.frontend.domid();
    assert_eq!(
        copy_from(&p.backend, span(domid, p.gref, 4000), 97),
        Err(GrantError::BadCopyArg)
    );
    assert_eq!(
        copy_from(&p.backend, span(domid, p.gref, 4000), 96).map(|b| b.len()),
        Ok(96)
    );
    assert_eq!(
        copy_to(&p.backend, span(domid, p.gref, 1), &[0; PAGE_SIZE]),
        Err(GrantError::BadCopyArg)
    );
    assert_eq!(
        copy_from(&p.backend, span(domid, p.gref, u16::MAX), 1),
        Err(GrantError::BadCopyArg)
    );
    // A local buffer larger than a page is rejected too.
    assert_eq!(
        copy_from(&p.backend, span(domid, p.gref, 0), PAGE_SIZE + 1),
        Err(GrantError::BadCopyArg)
    );
    // Nothing stays pinned after the rejection.
    assert_eq!(
        p.frontend.grant_entry(p.gref).unwrap().flags & GTF_READING,
        0
    );
}

#[test]
fn copy_rejects_readonly_grant_as_destination() {
    let p = pair(true);
    let domid = p.frontend.domid();
    assert_eq!(
        copy_to(&p.backend, span(domid, p.gref, 0), b"overwrite"),
        Err(GrantError::GeneralError)
    );
    assert_eq!(p.page.to_vec()[0], 0, "the page is untouched");
    // Reading a read-only grant is fine.
    assert!(copy_from(&p.backend, span(domid, p.gref, 0), 4).is_ok());
}

#[test]
fn copy_rejects_entry_not_in_use() {
    let p = pair(false);
    let domid = p.frontend.domid();
    // A gref inside the table that was never granted.
    let unused = (8..p.frontend.grant_table_size())
        .find(|&gref| p.frontend.grant_entry(gref).unwrap().flags == 0)
        .unwrap();
    assert_eq!(
        copy_from(&p.backend, span(domid, unused, 0), 8),
        Err(GrantError::GeneralError)
    );
    // A grant that was ended.
    p.frontend.end_access(p.gref).unwrap();
    assert_eq!(
        copy_from(&p.backend, span(domid, p.gref, 0), 8),
        Err(GrantError::GeneralError)
    );
}

#[test]
fn copy_rejects_entry_with_wrong_type_bits() {
    let p = pair(false);
    let entry = p.frontend.grant_entry(p.gref).unwrap();
    // GTF_accept_transfer (2) is not an access grant.
    p.frontend
        .set_grant_entry(p.gref, GrantEntry { flags: 2, ..entry });
    assert_eq!(
        copy_from(&p.backend, span(p.frontend.domid(), p.gref, 0), 8),
        Err(GrantError::GeneralError)
    );
}

#[test]
fn copy_rejects_grant_of_missing_frame() {
    let p = pair(false);
    let gfn = p.frontend.grant_entry(p.gref).unwrap().frame;
    assert!(p.frontend.free_page(gfn));
    assert_eq!(
        copy_from(&p.backend, span(p.frontend.domid(), p.gref, 0), 8),
        Err(GrantError::BadPage)
    );
}

#[test]
fn copy_rejects_grant_pinned_by_another_domain() {
    let p = pair(false);
    let third = p.xen.create_domain("other");
    let gfn = p.frontend.grant_entry(p.gref).unwrap().frame;
    let _mapping = p
        .backend
        .map_grants(p.frontend.domid(), &[p.gref], true)
        .unwrap();
    // Regrant the pinned entry to a third domain: Xen keeps honouring the
    // pin and refuses the newcomer.
    p.frontend.set_grant_entry(
        p.gref,
        GrantEntry {
            flags: GTF_PERMIT_ACCESS,
            domid: third.domid(),
            frame: gfn,
        },
    );
    assert_eq!(
        copy_from(&third, span(p.frontend.domid(), p.gref, 0), 8),
        Err(GrantError::GeneralError)
    );
}

#[test]
fn copy_to_self_through_domid_self() {
    let xen = Hypervisor::new();
    let domain = xen.create_domain("loop");
    let (gfn, page) = domain.alloc_page();
    let gref = domain.grant_access(domain.domid(), gfn, false).unwrap();
    copy_to(&domain, span(DOMID_SELF, gref, 100), b"self").unwrap();
    let mut back = [0; 4];
    page.read(100, &mut back);
    assert_eq!(&back, b"self");
}

#[test]
fn grant_to_grant_copy() {
    let xen = Hypervisor::new();
    let first = xen.create_domain("first");
    let second = xen.create_domain("second");
    let backend = xen.create_domain("driver");
    let (source_gfn, source_page) = first.alloc_page();
    source_page.write(0, b"packet data");
    let (destination_gfn, destination_page) = second.alloc_page();
    let source = first
        .grant_access(backend.domid(), source_gfn, true)
        .unwrap();
    let destination = second
        .grant_access(backend.domid(), destination_gfn, false)
        .unwrap();
    let mut ops = [
        CopyOp::GrantToGrant {
            source: span(first.domid(), source, 0),
            destination: span(second.domid(), destination, 50),
            length: 11,
        },
        // A failing operation does not stop the batch.
        CopyOp::GrantToGrant {
            source: span(first.domid(), source, 0),
            destination: span(second.domid(), source, 0),
            length: 1,
        },
        CopyOp::GrantToGrant {
            source: span(first.domid(), source, 0),
            destination: span(first.domid(), source, 0),
            length: 1,
        },
    ];
    let mut status = [Ok(()); 3];
    backend.clone().copy(&mut ops, &mut status);
    assert_eq!(
        status,
        [
            Ok(()),
            Err(GrantError::GeneralError),
            Err(GrantError::GeneralError)
        ]
    );
    let mut back = [0; 11];
    destination_page.read(50, &mut back);
    assert_eq!(&back, b"packet data");
}

#[test]
fn end_access_fails_while_mapped() {
    let p = pair(false);
    let mut backend = p.backend.clone();
    let mapping = backend.map(p.frontend.domid(), &[p.gref], true).unwrap();
    let flags = p.frontend.grant_entry(p.gref).unwrap().flags;
    assert_eq!(
        flags & (GTF_READING | GTF_WRITING),
        GTF_READING | GTF_WRITING
    );
    assert_eq!(p.frontend.end_access(p.gref), Err(EndAccessError::InUse));
    backend.unmap(mapping);
    assert_eq!(
        p.frontend.grant_entry(p.gref).unwrap().flags & (GTF_READING | GTF_WRITING),
        0
    );
    assert_eq!(p.frontend.end_access(p.gref), Ok(()));
    assert_eq!(
        p.frontend.end_access(p.gref),
        Err(EndAccessError::NotGranted)
    );
    assert_eq!(p.frontend.end_access(3), Err(EndAccessError::BadGntref));
    assert_eq!(
        p.frontend.end_access(p.frontend.grant_table_size()),
        Err(EndAccessError::BadGntref)
    );
}

#[test]
fn readonly_map_sets_only_reading() {
    let p = pair(false);
    let mapping = p
        .backend
        .map_grants(p.frontend.domid(), &[p.gref], false)
        .unwrap();
    let flags = p.frontend.grant_entry(p.gref).unwrap().flags;
    assert_eq!(flags & (GTF_READING | GTF_WRITING), GTF_READING);
    assert!(!mapping.is_writable());
    assert_eq!(mapping.load_u32(0), u32::from_le_bytes([0, 1, 2, 3]));
    p.backend.unmap_grants(mapping).unwrap();
}

#[test]
fn writable_map_of_readonly_grant_fails() {
    let p = pair(true);
    assert_eq!(
        p.backend
            .map_grants(p.frontend.domid(), &[p.gref], true)
            .err(),
        Some(GrantError::GeneralError)
    );
    let mapping = p
        .backend
        .map_grants(p.frontend.domid(), &[p.gref], false)
        .unwrap();
    assert_eq!(
        p.frontend.grant_entry(p.gref).unwrap().flags & GTF_READONLY,
        GTF_READONLY
    );
    p.backend.unmap_grants(mapping).unwrap();
}

#[test]
#[should_panic(expected = "read-only grant mapping")]
fn writing_through_readonly_mapping_panics() {
    let p = pair(false);
    let mapping = p
        .backend
        .map_grants(p.frontend.domid(), &[p.gref], false)
        .unwrap();
    mapping.store_u32(0, 1);
}

#[test]
fn map_errors() {
    let p = pair(false);
    let domid = p.frontend.domid();
    assert_eq!(
        p.backend.map_grants(99, &[p.gref], true).err(),
        Some(GrantError::BadDomain)
    );
    assert_eq!(
        p.backend.map_grants(DOMID_SELF, &[p.gref], true).err(),
        Some(GrantError::BadDomain),
        "map_grant_ref does not resolve DOMID_SELF"
    );
    assert_eq!(
        p.backend.map_grants(domid, &[u32::MAX], true).err(),
        Some(GrantError::BadGntref)
    );
    let third = p.xen.create_domain("other");
    assert_eq!(
        third.map_grants(domid, &[p.gref], true).err(),
        Some(GrantError::GeneralError)
    );
    assert_eq!(
        p.backend.map_grants(domid, &[], true).err(),
        Some(GrantError::GeneralError)
    );
    assert_eq!(p.backend.active_maps(), 0);
}

#[test]
fn multi_page_map_is_contiguous_and_all_or_nothing() {
    let xen = Hypervisor::new();
    let frontend = xen.create_domain("guest");
    let backend = xen.create_domain("driver");
    let mut grefs = Vec::new();
    let mut pages = Vec::new();
    for index in 0..4u8 {
        let (gfn, page) = frontend.alloc_page();
        page.fill(index);
        pages.push(page);
        grefs.push(frontend.grant_access(backend.domid(), gfn, false).unwrap());
    }
    let mapping = backend.map_grants(frontend.domid(), &grefs, true).unwrap();
    assert_eq!(mapping.len(), 4 * PAGE_SIZE);
    let mut edge = [0; 2];
    mapping.read(2 * PAGE_SIZE - 1, &mut edge);
    assert_eq!(edge, [1, 2]);
    mapping.write(3 * PAGE_SIZE - 2, &[9, 9, 9, 9]);
    assert_eq!(pages[2].to_vec()[PAGE_SIZE - 1], 9);
    assert_eq!(pages[3].to_vec()[1], 9);
    assert_eq!(backend.active_maps(), 4);
    backend.unmap_grants(mapping).unwrap();
    assert_eq!(backend.active_maps(), 0);

    // One bad gref: nothing stays mapped.
    let mut bad = grefs.clone();
    bad[2] = u32::MAX;
    assert_eq!(
        backend.map_grants(frontend.domid(), &bad, true).err(),
        Some(GrantError::BadGntref)
    );
    assert_eq!(backend.active_maps(), 0);
    for gref in grefs {
        assert_eq!(frontend.grant_entry(gref).unwrap().flags & GTF_READING, 0);
    }
}

#[test]
fn map_counts_and_unmap_rules() {
    let p = pair(false);
    let domid = p.frontend.domid();
    let first = p.backend.map_grant(domid, p.gref, true).unwrap();
    let second = p.backend.map_grant(domid, p.gref, false).unwrap();
    assert_ne!(first, second);
    p.backend.unmap_grant(first).unwrap();
    // Still mapped read-only by the second handle: reading stays, writing goes.
    let flags = p.frontend.grant_entry(p.gref).unwrap().flags;
    assert_eq!(flags & (GTF_READING | GTF_WRITING), GTF_READING);
    assert_eq!(p.frontend.end_access(p.gref), Err(EndAccessError::InUse));
    p.backend.unmap_grant(second).unwrap();
    assert_eq!(p.backend.unmap_grant(second), Err(GrantError::BadHandle));
    assert_eq!(p.backend.unmap_grant(12345), Err(GrantError::BadHandle));
    assert_eq!(p.frontend.end_access(p.gref), Ok(()));
}

#[test]
fn unmap_of_mapping_whose_handle_is_gone_reports_bad_handle() {
    let p = pair(false);
    let mapping = p
        .backend
        .map_grants(p.frontend.domid(), &[p.gref], true)
        .unwrap();
    p.backend.unmap_grant(mapping.handles()[0]).unwrap();
    assert_eq!(p.backend.unmap_grants(mapping), Err(GrantError::BadHandle));
}

#[test]
fn pin_counter_overflow_is_refused() {
    let p = pair(false);
    let domid = p.frontend.domid();
    let handles: Vec<_> = (0..255)
        .map(|_| p.backend.map_grant(domid, p.gref, false).unwrap())
        .collect();
    assert_eq!(
        p.backend.map_grant(domid, p.gref, false),
        Err(GrantError::GeneralError)
    );
    for handle in handles {
        p.backend.unmap_grant(handle).unwrap();
    }
}

#[test]
fn maptrack_exhaustion_is_no_space() {
    let xen = Hypervisor::with_config(SimConfig {
        max_maptrack_handles: 2,
        ..SimConfig::default()
    });
    let frontend = xen.create_domain("guest");
    let backend = xen.create_domain("driver");
    let (gfn, _page) = frontend.alloc_page();
    let gref = frontend.grant_access(backend.domid(), gfn, false).unwrap();
    let a = backend.map_grant(frontend.domid(), gref, true).unwrap();
    let _b = backend.map_grant(frontend.domid(), gref, true).unwrap();
    assert_eq!(
        backend.map_grant(frontend.domid(), gref, true),
        Err(GrantError::NoSpace)
    );
    backend.unmap_grant(a).unwrap();
    assert!(backend.map_grant(frontend.domid(), gref, true).is_ok());
}

#[test]
fn grant_table_exhaustion_is_no_space() {
    let xen = Hypervisor::with_config(SimConfig {
        grant_frames: 1,
        ..SimConfig::default()
    });
    let frontend = xen.create_domain("guest");
    let (gfn, _page) = frontend.alloc_page();
    let usable = 512 - 8;
    let grefs: Vec<u32> = (0..usable)
        .map(|_| frontend.grant_access(0, gfn, true).unwrap())
        .collect();
    assert!(grefs.iter().all(|&gref| (8..512).contains(&gref)));
    assert_eq!(
        frontend.grant_access(0, gfn, true),
        Err(GrantError::NoSpace)
    );
    frontend.end_access(grefs[0]).unwrap();
    assert_eq!(frontend.grant_access(0, gfn, true), Ok(grefs[0]));
}

#[test]
fn gref_order_follows_the_seed() {
    let grefs = |seed, shuffle| {
        let xen = Hypervisor::with_config(SimConfig {
            seed,
            shuffle_grefs: shuffle,
            ..SimConfig::default()
        });
        let domain = xen.create_domain("guest");
        let (gfn, _) = domain.alloc_page();
        (0..5)
            .map(|_| domain.grant_access(0, gfn, true).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(grefs(1, true), grefs(1, true));
    assert_ne!(grefs(1, true), grefs(2, true));
    assert_eq!(grefs(1, false), vec![8, 9, 10, 11, 12]);
}

#[test]
fn mapping_outlives_granting_domain() {
    let p = pair(false);
    let mapping = p
        .backend
        .map_grants(p.frontend.domid(), &[p.gref], true)
        .unwrap();
    p.xen.destroy_domain(p.frontend.domid()).unwrap();
    // The memory stays valid for the mapper, as a zombie domain's does.
    mapping.write(0, b"late");
    assert_eq!(&p.page.to_vec()[..4], b"late");
    assert_eq!(
        copy_from(&p.backend, span(p.frontend.domid(), p.gref, 0), 4),
        Err(GrantError::BadDomain)
    );
    p.backend.unmap_grants(mapping).unwrap();
}

#[test]
fn destroyed_mapper_releases_its_pins() {
    let p = pair(false);
    let _mapping = p
        .backend
        .map_grants(p.frontend.domid(), &[p.gref], true)
        .unwrap();
    p.xen.destroy_domain(p.backend.domid()).unwrap();
    assert_eq!(
        p.frontend.grant_entry(p.gref).unwrap().flags & GTF_READING,
        0
    );
    assert_eq!(p.frontend.end_access(p.gref), Ok(()));
}

#[test]
fn concurrent_copies_and_end_access() {
    let p = pair(false);
    let domid = p.frontend.domid();
    let gref = p.gref;
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let backend = p.backend.clone();
            std::thread::spawn(move || {
                for _ in 0..200 {
                    let bytes = copy_from(&backend, span(domid, gref, 0), 16);
                    assert!(matches!(bytes, Ok(_) | Err(GrantError::GeneralError)));
                }
            })
        })
        .collect();
    // end_access either fails with InUse (a copy holds a pin) or succeeds.
    let mut ended = false;
    while !ended {
        match p.frontend.end_access(gref) {
            Ok(()) => ended = true,
            Err(EndAccessError::InUse) => std::thread::yield_now(),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    for worker in workers {
        worker.join().unwrap();
    }
    assert_eq!(
        p.frontend.grant_entry(gref).unwrap().flags & (GTF_READING | GTF_WRITING),
        0
    );
}

#[test]
fn injected_faults_fail_the_next_operations_only() {
    let p = pair(false);
    let domid = p.frontend.domid();
    p.backend.inject_grant_faults(2, GrantError::Eagain);
    // Length-0 copies do not count.
    assert_eq!(copy_from(&p.backend, span(domid, p.gref, 0), 0), Ok(vec![]));
    assert_eq!(
        copy_from(&p.backend, span(domid, p.gref, 0), 4),
        Err(GrantError::Eagain)
    );
    assert_eq!(
        p.backend.map_grants(domid, &[p.gref], true).err(),
        Some(GrantError::Eagain)
    );
    assert_eq!(
        p.frontend.grant_entry(p.gref).unwrap().flags & GTF_READING,
        0
    );
    assert!(copy_from(&p.backend, span(domid, p.gref, 0), 4).is_ok());
    // Faults belong to the domain that was given them.
    p.frontend.inject_grant_faults(1, GrantError::NoSpace);
    assert!(copy_from(&p.backend, span(domid, p.gref, 0), 4).is_ok());
    p.frontend.inject_grant_faults(0, GrantError::NoSpace);
}

#[test]
fn stats_count_copies_maps_and_events() {
    let p = pair(false);
    let domid = p.frontend.domid();
    copy_from(&p.backend, span(domid, p.gref, 0), 100).unwrap();
    copy_to(&p.backend, span(domid, p.gref, 0), &[1; 28]).unwrap();
    let _ = copy_from(&p.backend, span(domid, u32::MAX, 0), 8);
    let _ = copy_from(&p.backend, span(domid, p.gref, 0), 0);
    let mapping = p.backend.map_grants(domid, &[p.gref], true).unwrap();
    p.backend.unmap_grants(mapping).unwrap();
    let port = p.frontend.alloc_unbound(p.backend.domid()).unwrap();
    p.frontend.send(port).unwrap();
    let stats = p.backend.stats();
    assert_eq!(stats.grant_copies, 2);
    assert_eq!(stats.grant_copy_bytes, 128);
    assert_eq!(stats.grant_copy_errors, 1);
    assert_eq!((stats.grant_maps, stats.grant_unmaps), (1, 1));
    assert_eq!(stats.events_sent, 0);
    assert_eq!(p.frontend.stats().events_sent, 1);
    assert_eq!(p.frontend.stats().grant_copies, 0);
}

#[test]
fn rewriting_a_pinned_entry_does_not_move_the_pin() {
    let p = pair(false);
    let domid = p.frontend.domid();
    let mapping = p.backend.map_grants(domid, &[p.gref], true).unwrap();
    let (other_gfn, other_page) = p.frontend.alloc_page();
    // The guest points the entry elsewhere and even makes it read-only.
    p.frontend.set_grant_entry(
        p.gref,
        GrantEntry {
            flags: GTF_PERMIT_ACCESS | GTF_READONLY | GTF_READING | GTF_WRITING,
            domid: p.backend.domid(),
            frame: other_gfn,
        },
    );
    // While pinned, Xen keeps using the frame it looked up at the first pin
    // and does not look at the entry again for same-kind pins.
    mapping.write(0, b"pinned");
    copy_to(&p.backend, span(domid, p.gref, 8), b"copy").unwrap();
    assert_eq!(&p.page.to_vec()[..12], b"pinned\x06\x07copy");
    assert_eq!(&other_page.to_vec()[..4], &[0, 0, 0, 0]);
    p.backend.unmap_grants(mapping).unwrap();
    // Unpinned, the new entry applies: read-only now, and the other frame.
    assert_eq!(
        copy_to(&p.backend, span(domid, p.gref, 0), b"x"),
        Err(GrantError::GeneralError)
    );
    other_page.write(0, b"other");
    assert_eq!(
        copy_from(&p.backend, span(domid, p.gref, 0), 5).unwrap(),
        b"other"
    );
}
