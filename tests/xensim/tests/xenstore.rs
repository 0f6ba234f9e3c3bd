//! xenstored rules: permissions, watches, transactions, quotas.

use std::time::Duration;

use xenbus::platform::{Access, Permission, TxId, Xenstore, XsError};
use xensim::xenstore::{QUOTA_TRANSACTIONS, QUOTA_WATCHES};
use xensim::{Domain, Hypervisor, WatchEvent};

const NONE: TxId = TxId::NONE;

fn perm(domid: u16, access: Access) -> Permission {
    Permission { domid, access }
}

fn event(path: &str, token: &str) -> WatchEvent {
    WatchEvent {
        path: path.to_string(),
        token: token.to_string(),
    }
}

fn machine() -> (Hypervisor, Domain, Domain, Domain) {
    let xen = Hypervisor::new();
    let dom0 = xen.dom0();
    let a = xen.create_domain("a");
    let b = xen.create_domain("b");
    (xen, dom0, a, b)
}

#[test]
fn read_write_directory_rm() {
    let (_xen, _dom0, mut a, _b) = machine();
    a.write(NONE, "data/x/y", "1").unwrap();
    assert_eq!(a.read(NONE, "data/x/y").unwrap(), "1");
    assert_eq!(a.read(NONE, "/local/domain/1/data/x/y").unwrap(), "1");
    assert_eq!(
        a.read(NONE, "data/x").unwrap(),
        "",
        "missing parents are created empty"
    );
    assert_eq!(a.directory(NONE, "data/x").unwrap(), vec!["y"]);
    a.mkdir(NONE, "data/x/z").unwrap();
    a.mkdir(NONE, "data/x/z").unwrap();
    assert_eq!(a.directory(NONE, "data/x").unwrap(), vec!["y", "z"]);
    a.rm(NONE, "data/x").unwrap();
    assert_eq!(a.read(NONE, "data/x/y"), Err(XsError::Enoent));
    // Removing a missing node whose parent exists is fine; otherwise ENOENT.
    assert_eq!(a.rm(NONE, "data/x"), Ok(()));
    assert_eq!(a.rm(NONE, "data/x/y"), Err(XsError::Enoent));
}

#[test]
fn invalid_paths_are_einval() {
    let (_xen, mut dom0, mut a, _b) = machine();
    for bad in ["", "/a//b", "/a/", "data/ü", "@introduceDomain", "/a b"] {
        assert_eq!(a.read(NONE, bad), Err(XsError::Einval), "{bad:?}");
        assert_eq!(a.write(NONE, bad, "x"), Err(XsError::Einval), "{bad:?}");
    }
    assert_eq!(dom0.rm(NONE, "/"), Err(XsError::Einval));
}

#[test]
fn too_big_requests_are_e2big() {
    let (_xen, _dom0, mut a, _b) = machine();
    let value = "v".repeat(4096);
    assert_eq!(a.write(NONE, "data/big", &value), Err(XsError::E2big));
}

#[test]
fn domain_cannot_read_another_domains_nodes() {
    let (_xen, _dom0, mut a, mut b) = machine();
    a.write(NONE, "data/secret", "42").unwrap();
    assert_eq!(
        b.read(NONE, "/local/domain/1/data/secret"),
        Err(XsError::Eacces)
    );
    assert_eq!(b.directory(NONE, "/local/domain/1"), Err(XsError::Eacces));
    assert_eq!(
        b.write(NONE, "/local/domain/1/data/secret", "0"),
        Err(XsError::Eacces)
    );
    assert_eq!(
        b.rm(NONE, "/local/domain/1/data/secret"),
        Err(XsError::Eacces)
    );
    // A missing node under an unreadable parent says EACCES, not ENOENT.
    assert_eq!(
        b.read(NONE, "/local/domain/1/data/nothing"),
        Err(XsError::Eacces)
    );
    assert_eq!(a.read(NONE, "data/nothing"), Err(XsError::Enoent));
    assert_eq!(a.read(NONE, "data/secret").unwrap(), "42");
}

#[test]
fn domain_reads_its_home_but_writes_only_where_allowed() {
    let (_xen, _dom0, mut a, _b) = machine();
    assert_eq!(a.read(NONE, "name").unwrap(), "a");
    assert_eq!(a.read(NONE, "domid").unwrap(), "1");
    // The home is (n0,r1): readable, not writable.
    assert_eq!(a.write(NONE, "name", "evil"), Err(XsError::Eacces));
    assert_eq!(a.write(NONE, "newkey", "x"), Err(XsError::Eacces));
    assert_eq!(a.read(NONE, "/local/domain/0/name"), Err(XsError::Eacces));
    assert_eq!(a.write(NONE, "/tool/x", "1"), Err(XsError::Eacces));
    a.write(NONE, "data/ok", "1").unwrap();
    a.write(NONE, "control/shutdown", "poweroff").unwrap();
}

#[test]
fn new_nodes_inherit_perms_and_unprivileged_creators_own_them() {
    let (_xen, mut dom0, mut a, mut b) = machine();
    // dom0 gives b write access to a directory it owns.
    dom0.mkdir(NONE, "/shared").unwrap();
    dom0.set_perms(
        NONE,
        "/shared",
        &[perm(0, Access::Read), perm(2, Access::Both)],
    )
    .unwrap();
    b.write(NONE, "/shared/by-b/leaf", "1").unwrap();
    // Created by b: b owns them, the rest of the list is inherited.
    let expected = vec![perm(2, Access::Read), perm(2, Access::Both)];
    assert_eq!(b.get_perms(NONE, "/shared/by-b").unwrap(), expected);
    assert_eq!(b.get_perms(NONE, "/shared/by-b/leaf").unwrap(), expected);
    // a may read everything there (default access r) but write nothing.
    assert_eq!(a.read(NONE, "/shared/by-b/leaf").unwrap(), "1");
    assert_eq!(
        a.write(NONE, "/shared/by-b/leaf", "2"),
        Err(XsError::Eacces)
    );
    assert_eq!(a.write(NONE, "/shared/by-a", "2"), Err(XsError::Eacces));
    // Created by dom0: the parent's list unchanged.
    dom0.write(NONE, "/shared/by-dom0", "x").unwrap();
    assert_eq!(
        dom0.get_perms(NONE, "/shared/by-dom0").unwrap(),
        vec![perm(0, Access::Read), perm(2, Access::Both)]
    );
}

#[test]
fn set_perms_rules() {
    let (_xen, mut dom0, mut a, mut b) = machine();
    a.write(NONE, "data/shared", "hello").unwrap();
    assert_eq!(
        b.read(NONE, "/local/domain/1/data/shared"),
        Err(XsError::Eacces)
    );
    // The owner grants b read access.
    a.set_perms(
        NONE,
        "data/shared",
        &[perm(1, Access::None), perm(2, Access::Read)],
    )
    .unwrap();
    assert_eq!(
        b.read(NONE, "/local/domain/1/data/shared").unwrap(),
        "hello"
    );
    assert_eq!(
        b.write(NONE, "/local/domain/1/data/shared", "x"),
        Err(XsError::Eacces)
    );
    // A non-owner may not change permissions, even with write access.
    a.set_perms(
        NONE,
        "data/shared",
        &[perm(1, Access::None), perm(2, Access::Both)],
    )
    .unwrap();
    b.write(NONE, "/local/domain/1/data/shared", "from b")
        .unwrap();
    assert_eq!(
        b.set_perms(
            NONE,
            "/local/domain/1/data/shared",
            &[perm(2, Access::Both)]
        ),
        Err(XsError::Eacces)
    );
    // An unprivileged owner may not give the node away.
    assert_eq!(
        a.set_perms(NONE, "data/shared", &[perm(2, Access::None)]),
        Err(XsError::Eperm)
    );
    assert_eq!(a.set_perms(NONE, "data/shared", &[]), Err(XsError::Einval));
    let many: Vec<_> = (0..6).map(|d| perm(d, Access::Read)).collect();
    let mut too_many = vec![perm(1, Access::None)];
    too_many.extend(many);
    assert_eq!(
        a.set_perms(NONE, "data/shared", &too_many),
        Err(XsError::Enospc)
    );
    // dom0 may do anything.
    dom0.set_perms(
        NONE,
        "/local/domain/1/data/shared",
        &[perm(2, Access::None)],
    )
    .unwrap();
    assert_eq!(
        b.get_perms(NONE, "/local/domain/1/data/shared").unwrap(),
        vec![perm(2, Access::None)]
    );
}

#[test]
fn write_only_access_cannot_read() {
    let (_xen, mut dom0, _a, mut b) = machine();
    dom0.write(NONE, "/drop", "").unwrap();
    dom0.set_perms(NONE, "/drop", &[perm(0, Access::Write)])
        .unwrap();
    b.write(NONE, "/drop", "mail").unwrap();
    assert_eq!(b.read(NONE, "/drop"), Err(XsError::Eacces));
}

#[test]
fn watch_fires_once_on_registration() {
    let (_xen, _dom0, mut a, _b) = machine();
    a.watch("/local/domain/1/data/missing", "tok").unwrap();
    assert_eq!(
        a.poll_watch(),
        Some(event("/local/domain/1/data/missing", "tok"))
    );
    assert_eq!(a.poll_watch(), None);
}

#[test]
fn watch_fires_for_node_and_descendants_with_token() {
    let (_xen, mut dom0, mut a, _b) = machine();
    a.watch("/local/domain/1/data", "first").unwrap();
    a.watch("/local/domain/1/data/x", "second").unwrap();
    a.poll_watches();
    a.write(NONE, "data/x/y", "1").unwrap();
    assert_eq!(
        a.poll_watches(),
        vec![
            event("/local/domain/1/data/x/y", "first"),
            event("/local/domain/1/data/x/y", "second"),
        ]
    );
    // A sibling with a common prefix is not a descendant.
    a.write(NONE, "data/xy", "1").unwrap();
    assert_eq!(
        a.poll_watches(),
        vec![event("/local/domain/1/data/xy", "first")]
    );
    // Changes by other domains fire too.
    dom0.write(NONE, "/local/domain/1/data/x", "new").unwrap();
    assert_eq!(
        a.poll_watches(),
        vec![
            event("/local/domain/1/data/x", "first"),
            event("/local/domain/1/data/x", "second"),
        ]
    );
}

#[test]
fn relative_watch_reports_relative_paths() {
    let (_xen, _dom0, mut a, _b) = machine();
    a.watch("data", "rel").unwrap();
    assert_eq!(a.poll_watch(), Some(event("data", "rel")));
    a.write(NONE, "/local/domain/1/data/k", "v").unwrap();
    assert_eq!(a.poll_watch(), Some(event("data/k", "rel")));
}

#[test]
fn removal_fires_ancestors_and_exact_descendant_watches() {
    let (_xen, _dom0, mut a, _b) = machine();
    a.write(NONE, "data/dir/child/leaf", "1").unwrap();
    a.watch("data", "ancestor").unwrap();
    a.watch("data/dir/child/leaf", "leaf").unwrap();
    a.watch("data/dir/child", "child").unwrap();
    a.poll_watches();
    a.rm(NONE, "data/dir").unwrap();
    let mut events = a.poll_watches();
    events.sort_by(|x, y| x.token.cmp(&y.token));
    assert_eq!(
        events,
        vec![
            event("data/dir", "ancestor"),
            event("data/dir/child", "child"),
            event("data/dir/child/leaf", "leaf"),
        ]
    );
}

#[test]
fn unwatch_stops_events_and_duplicates_are_refused() {
    let (_xen, _dom0, mut a, _b) = machine();
    a.watch("data", "t").unwrap();
    assert_eq!(a.watch("data", "t"), Err(XsError::Eexist));
    a.watch("data", "other").unwrap();
    a.poll_watches();
    a.unwatch("data", "t").unwrap();
    assert_eq!(a.unwatch("data", "t"), Err(XsError::Enoent));
    a.write(NONE, "data/k", "v").unwrap();
    assert_eq!(a.poll_watches(), vec![event("data/k", "other")]);
}

#[test]
fn watch_events_need_read_access() {
    let (_xen, mut dom0, mut a, mut b) = machine();
    // b watches a's data directory, which it cannot read.
    b.watch("/local/domain/1/data", "spy").unwrap();
    b.poll_watches();
    a.write(NONE, "data/secret", "1").unwrap();
    assert_eq!(b.poll_watches(), vec![]);
    // Once a lets b read the node, b sees changes to it.
    a.set_perms(
        NONE,
        "data/secret",
        &[perm(1, Access::None), perm(2, Access::Read)],
    )
    .unwrap();
    assert_eq!(
        b.poll_watches(),
        vec![event("/local/domain/1/data/secret", "spy")]
    );
    a.write(NONE, "data/secret", "2").unwrap();
    assert_eq!(
        b.poll_watches(),
        vec![event("/local/domain/1/data/secret", "spy")]
    );
    // dom0 sees everything.
    dom0.watch("/local/domain/1/data", "dom0").unwrap();
    dom0.poll_watches();
    a.write(NONE, "data/other", "1").unwrap();
    assert_eq!(
        dom0.poll_watches(),
        vec![event("/local/domain/1/data/other", "dom0")]
    );
}

#[test]
fn blocking_wait_for_watch() {
    let (_xen, _dom0, mut a, _b) = machine();
    a.watch("data/flag", "flag").unwrap();
    a.poll_watches();
    assert_eq!(a.wait_watch(Duration::from_millis(20)), None);
    let waiter = {
        let a = a.clone();
        std::thread::spawn(move || a.wait_watch(xensim::LONG_WAIT))
    };
    a.write(NONE, "data/flag", "1").unwrap();
    assert_eq!(waiter.join().unwrap(), Some(event("data/flag", "flag")));
}

#[test]
fn special_domain_watches_reach_dom0() {
    let (xen, mut dom0, mut a, _b) = machine();
    dom0.watch("@introduceDomain", "intro").unwrap();
    dom0.watch("@releaseDomain", "release").unwrap();
    a.watch("@releaseDomain", "a-release").unwrap();
    dom0.poll_watches();
    a.poll_watches();
    let c = xen.create_domain("c");
    xen.destroy_domain(c.domid()).unwrap();
    assert_eq!(
        dom0.poll_watches(),
        vec![
            event("@introduceDomain", "intro"),
            event("@releaseDomain", "release")
        ]
    );
    assert_eq!(a.poll_watches(), vec![]);
}

#[test]
fn transaction_conflict_is_eagain() {
    let (_xen, _dom0, mut a, _b) = machine();
    a.write(NONE, "data/counter", "0").unwrap();
    let first = a.transaction_start().unwrap();
    let second = a.transaction_start().unwrap();
    let value: u32 = a.read(first, "data/counter").unwrap().parse().unwrap();
    a.write(first, "data/counter", &(value + 1).to_string())
        .unwrap();
    let value: u32 = a.read(second, "data/counter").unwrap().parse().unwrap();
    a.write(second, "data/counter", &(value + 1).to_string())
        .unwrap();
    a.transaction_end(first, true).unwrap();
    assert_eq!(a.transaction_end(second, true), Err(XsError::Eagain));
    assert_eq!(a.read(NONE, "data/counter").unwrap(), "1");
}

#[test]
fn transaction_conflict_on_a_node_created_meanwhile() {
    let (_xen, _dom0, mut a, _b) = machine();
    let tx = a.transaction_start().unwrap();
    assert_eq!(a.read(tx, "data/new"), Err(XsError::Enoent));
    a.write(NONE, "data/new", "outside").unwrap();
    a.write(tx, "data/other", "inside").unwrap();
    assert_eq!(a.transaction_end(tx, true), Err(XsError::Eagain));
    assert_eq!(a.read(NONE, "data/other"), Err(XsError::Enoent));
}

#[test]
fn transaction_conflict_on_outside_write_to_a_read_node() {
    let (_xen, mut dom0, mut a, _b) = machine();
    a.write(NONE, "data/config", "old").unwrap();
    let tx = a.transaction_start().unwrap();
    assert_eq!(a.read(tx, "data/config").unwrap(), "old");
    dom0.write(NONE, "/local/domain/1/data/config", "new")
        .unwrap();
    // The transaction still sees its snapshot.
    assert_eq!(a.read(tx, "data/config").unwrap(), "old");
    a.write(tx, "data/derived", "from old").unwrap();
    assert_eq!(a.transaction_end(tx, true), Err(XsError::Eagain));
}

#[test]
fn independent_transactions_both_commit() {
    let (_xen, _dom0, mut a, mut b) = machine();
    let ta = a.transaction_start().unwrap();
    let tb = b.transaction_start().unwrap();
    a.write(ta, "data/x", "a").unwrap();
    b.write(tb, "data/x", "b").unwrap();
    a.transaction_end(ta, true).unwrap();
    b.transaction_end(tb, true).unwrap();
    assert_eq!(a.read(NONE, "data/x").unwrap(), "a");
    assert_eq!(b.read(NONE, "data/x").unwrap(), "b");
}

#[test]
fn transaction_isolation_abort_and_watch_timing() {
    let (_xen, _dom0, mut a, _b) = machine();
    a.watch("data", "w").unwrap();
    a.poll_watches();
    let tx = a.transaction_start().unwrap();
    a.write(tx, "data/k", "v").unwrap();
    assert_eq!(a.read(tx, "data/k").unwrap(), "v");
    assert_eq!(a.read(NONE, "data/k"), Err(XsError::Enoent));
    assert_eq!(a.poll_watches(), vec![], "no events before commit");
    a.transaction_end(tx, true).unwrap();
    assert_eq!(a.read(NONE, "data/k").unwrap(), "v");
    assert_eq!(a.poll_watches(), vec![event("data/k", "w")]);

    let tx = a.transaction_start().unwrap();
    a.rm(tx, "data/k").unwrap();
    a.transaction_end(tx, false).unwrap();
    assert_eq!(a.read(NONE, "data/k").unwrap(), "v");
    assert_eq!(a.poll_watches(), vec![]);
    assert_eq!(a.transaction_end(tx, true), Err(XsError::Enoent));
    assert_eq!(a.read(TxId(9999), "data/k"), Err(XsError::Enoent));
}

#[test]
fn transaction_permissions_are_checked() {
    let (_xen, _dom0, mut a, mut b) = machine();
    let tx = b.transaction_start().unwrap();
    assert_eq!(
        b.write(tx, "/local/domain/1/data/x", "1"),
        Err(XsError::Eacces)
    );
    b.transaction_end(tx, true).unwrap();
    assert_eq!(a.read(NONE, "data/x"), Err(XsError::Enoent));
}

#[test]
fn watch_and_transaction_quotas() {
    let (_xen, mut dom0, mut a, _b) = machine();
    for index in 0..QUOTA_WATCHES {
        a.watch(&format!("data/w{index}"), "t").unwrap();
    }
    assert_eq!(a.watch("data/one-more", "t"), Err(XsError::Enospc));
    dom0.watch("/a", "dom0 is not limited").unwrap();
    let open: Vec<_> = (0..QUOTA_TRANSACTIONS)
        .map(|_| a.transaction_start().unwrap())
        .collect();
    assert_eq!(a.transaction_start(), Err(XsError::Enospc));
    a.transaction_end(open[0], false).unwrap();
    assert!(a.transaction_start().is_ok());
}

#[test]
fn node_count_and_size_quotas() {
    let (_xen, _dom0, mut a, _b) = machine();
    assert_eq!(
        a.write(NONE, "data/big", &"x".repeat(2100)),
        Err(XsError::Enospc)
    );
    a.write(NONE, "data/fits", &"x".repeat(1500)).unwrap();
    // A directory's size counts its children's names: one with too many
    // cannot grow.
    let mut children = 0;
    let error = loop {
        match a.write(NONE, &format!("data/wide/child-number-{children}"), "") {
            Ok(()) => children += 1,
            Err(error) => break error,
        }
    };
    assert_eq!(error, XsError::Enospc);
    assert!((80..200).contains(&children), "{children} children");
    a.rm(NONE, "data/wide").unwrap();
    // Spread over directories, the node count quota is what stops it.
    let mut created = 0;
    let error = loop {
        match a.write(NONE, &format!("data/d{}/n{created}", created / 50), "") {
            Ok(()) => created += 1,
            Err(error) => break error,
        }
        assert!(created <= 1000, "quota not enforced");
    };
    assert_eq!(error, XsError::Enospc);
    assert!(created > 900, "only {created} nodes before the quota");
    // dom0 is not limited.
    let mut dom0 = a.hypervisor().dom0();
    for index in 0..300 {
        dom0.write(NONE, &format!("/wide/child-number-{index}"), "")
            .unwrap();
    }
}

#[test]
fn released_domain_nodes_pass_to_dom0() {
    let (xen, mut dom0, mut a, _b) = machine();
    a.write(NONE, "data/mine", "1").unwrap();
    xen.destroy_domain(a.domid()).unwrap();
    assert_eq!(
        dom0.get_perms(NONE, "/local/domain/1/data/mine").unwrap(),
        vec![perm(0, Access::None)]
    );
    assert_eq!(a.read(NONE, "data/mine"), Err(XsError::Eio));
}

#[test]
fn transaction_reading_what_it_changed_commits() {
    let (_xen, _dom0, mut a, _b) = machine();
    a.write(NONE, "data/dir/leaf", "1").unwrap();
    let tx = a.transaction_start().unwrap();
    a.rm(tx, "data/dir/leaf").unwrap();
    // The parent was changed by this transaction only: no conflict.
    assert_eq!(a.directory(tx, "data/dir").unwrap(), Vec::<String>::new());
    a.write(tx, "data/dir2/x", "1").unwrap();
    assert_eq!(a.read(tx, "data/dir2").unwrap(), "");
    a.transaction_end(tx, true).unwrap();
    assert_eq!(a.directory(NONE, "data/dir").unwrap(), Vec::<String>::new());
    assert_eq!(a.read(NONE, "data/dir2/x").unwrap(), "1");
}

#[test]
fn transaction_over_its_node_quota_fails_to_commit() {
    let (_xen, _dom0, mut a, _b) = machine();
    let tx = a.transaction_start().unwrap();
    let mut error = None;
    for index in 0..2000 {
        if let Err(failure) = a.read(tx, &format!("data/missing{index}")) {
            if failure != XsError::Enoent {
                error = Some(failure);
                break;
            }
        }
    }
    assert_eq!(error, Some(XsError::Enospc));
    assert_eq!(a.transaction_end(tx, true), Err(XsError::Enomem));
}

#[test]
fn set_perms_fires_and_mkdir_of_existing_does_not() {
    let (_xen, _dom0, mut a, _b) = machine();
    a.write(NONE, "data/node", "1").unwrap();
    a.watch("data/node", "w").unwrap();
    a.poll_watches();
    a.mkdir(NONE, "data/node").unwrap();
    assert_eq!(a.poll_watches(), vec![]);
    a.set_perms(NONE, "data/node", &[perm(1, Access::Read)])
        .unwrap();
    assert_eq!(a.poll_watches(), vec![event("data/node", "w")]);
    // Failed requests fire nothing.
    let _ = a.set_perms(NONE, "data/node", &[]);
    assert_eq!(a.poll_watches(), vec![]);
}

#[test]
fn transaction_conflict_with_a_committed_removal() {
    let (_xen, _dom0, mut a, _b) = machine();
    a.write(NONE, "data/dir/x", "1").unwrap();
    let reader = a.transaction_start().unwrap();
    let remover = a.transaction_start().unwrap();
    assert_eq!(a.read(reader, "data/dir/x").unwrap(), "1");
    a.write(reader, "data/copy", "1").unwrap();
    a.rm(remover, "data/dir").unwrap();
    a.transaction_end(remover, true).unwrap();
    assert_eq!(a.transaction_end(reader, true), Err(XsError::Eagain));
    assert_eq!(a.read(NONE, "data/copy"), Err(XsError::Enoent));
}
