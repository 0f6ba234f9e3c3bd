//! xenstored: the configuration tree every split driver negotiates over.
//!
//! Semantics follow `docs/misc/xenstore.txt` and the C xenstored
//! (`tools/xenstored/core.c`, `watch.c`, `transaction.c`, `domain.c`):
//!
//! * **Permissions.** A node's first permission entry names its owner and
//!   the access everyone else gets; further entries grant access to single
//!   domains. dom0 and the owner may do anything. Reading needs `r`,
//!   writing or removing needs `w`, creating a node needs `w` on the
//!   nearest existing ancestor. A new node copies its parent's permissions;
//!   when an unprivileged domain creates it, that domain becomes the owner.
//!   Only the owner (or dom0) may set permissions, and an unprivileged
//!   owner may not give the node away. A failed lookup of a missing node
//!   says `EACCES` rather than `ENOENT` when the caller could not read the
//!   parent, so nothing leaks.
//! * **Paths** not starting with `/` are relative to `/local/domain/<domid>`;
//!   names use `[A-Za-z0-9_@/-]`, no empty components, bounded length.
//! * **Watches** fire for changes to the watched node and everything below
//!   it, and once right after registration. A removal fires the watches on
//!   the removed node and its ancestors, and watches set exactly on any
//!   removed descendant. An event only reaches a domain that can read the
//!   node or its parent (or could before a permission change). Relative
//!   watches get relative paths. `@introduceDomain` and `@releaseDomain`
//!   reach dom0.
//! * **Transactions** see a snapshot taken at start. Commit fails with
//!   `EAGAIN` when any node the transaction looked at (read, wrote, or
//!   found missing) changed meanwhile; otherwise its changes apply and
//!   their watches fire. A transaction that ran out of its node quota
//!   fails its commit with `ENOMEM`, as xenstored's does.
//! * **Quotas** (unprivileged domains): 1000 nodes owned, 2048 bytes per
//!   node, 128 watches, 10 open transactions of at most 1024 nodes each, 5
//!   permission entries per node, 4096-byte requests.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use xenbus::platform::{Access, DomId, Permission, TxId, Xenstore, XsError};

use crate::{Domain, DOM0};

/// One watch event: the path that changed (relative if the watch was
/// registered with a relative path) and the watch's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// The changed path.
    pub path: String,
    /// The token given to `watch`.
    pub token: String,
}

/// `XENSTORE_PAYLOAD_MAX`.
pub const PAYLOAD_MAX: usize = 4096;
/// `XENSTORE_ABS_PATH_MAX`.
pub const ABS_PATH_MAX: usize = 3072;
/// `XENSTORE_REL_PATH_MAX`.
pub const REL_PATH_MAX: usize = 2048;
/// Nodes an unprivileged domain may own.
pub const QUOTA_NODES: usize = 1000;
/// Maximum accounted size of one node written by an unprivileged domain.
pub const QUOTA_NODE_SIZE: usize = 2048;
/// Watches per unprivileged domain.
pub const QUOTA_WATCHES: usize = 128;
/// Open transactions per unprivileged domain.
pub const QUOTA_TRANSACTIONS: usize = 10;
/// Nodes one transaction of an unprivileged domain may touch.
pub const QUOTA_TRANSACTION_NODES: usize = 1024;
/// Permission entries per node set by an unprivileged domain.
pub const QUOTA_PERMISSIONS: usize = 5;

const PERM_READ: u8 = 1;
const PERM_WRITE: u8 = 2;
const PERM_OWNER: u8 = 4;

fn access_bits(access: Access) -> u8 {
    match access {
        Access::None => 0,
        Access::Read => PERM_READ,
        Access::Write => PERM_WRITE,
        Access::Both => PERM_READ | PERM_WRITE,
    }
}

fn access_letter(access: Access) -> char {
    match access {
        Access::None => 'n',
        Access::Read => 'r',
        Access::Write => 'w',
        Access::Both => 'b',
    }
}

fn privileged(domid: DomId) -> bool {
    domid == DOM0
}

/// `perm_for_conn`: what `domid` may do to a node with `perms`.
fn perm_for(domid: DomId, perms: &[Permission]) -> u8 {
    let all = PERM_READ | PERM_WRITE | PERM_OWNER;
    let Some(owner) = perms.first() else {
        return if privileged(domid) { all } else { 0 };
    };
    if privileged(domid) || owner.domid == domid {
        return all;
    }
    perms[1..]
        .iter()
        .find(|entry| entry.domid == domid)
        .map_or(access_bits(owner.access), |entry| access_bits(entry.access))
}

/// Formats permissions like the lab's reference dump: `n0,r4`.
pub fn format_perms(perms: &[Permission]) -> String {
    perms
        .iter()
        .map(|entry| format!("{}{}", access_letter(entry.access), entry.domid))
        .collect::<Vec<_>>()
        .join(",")
}

/// The parent of a canonical path (`/` for top-level nodes).
fn parent_of(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(index) => Some(&path[..index]),
        None => None,
    }
}

fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn child_path(parent: &str, name: &str) -> String {
    if parent == "/" {
        format!("/{name}")
    } else {
        format!("{parent}/{name}")
    }
}

/// `is_child`: whether `child` is `parent` or below it.
fn is_child(child: &str, parent: &str) -> bool {
    if parent == "/" {
        return child.starts_with('/');
    }
    child == parent
        || (child.starts_with(parent) && child.as_bytes().get(parent.len()) == Some(&b'/'))
}

/// The home directory of a domain.
pub fn home_of(domid: DomId) -> String {
    format!("/local/domain/{domid}")
}

/// Resolves and validates a path as xenstored's `canonicalize` and
/// `is_valid_nodename` do. `@`-paths are only valid for watches.
fn canonicalize(domid: DomId, path: &str, allow_special: bool) -> Result<String, XsError> {
    if path.is_empty() {
        return Err(XsError::Einval);
    }
    let valid_chars = |text: &str| {
        text.bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-/_@".contains(&byte))
    };
    if path.starts_with('@') {
        if !allow_special || !valid_chars(path) || path.len() > REL_PATH_MAX {
            return Err(XsError::Einval);
        }
        return Ok(path.to_string());
    }
    let full = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{}/{path}", home_of(domid))
    };
    if full.len() > ABS_PATH_MAX
        || (full.ends_with('/') && full != "/")
        || full.contains("//")
        || !valid_chars(&full)
    {
        return Err(XsError::Einval);
    }
    // Paths inside a domain's home may be REL_PATH_MAX long below it.
    let mut local_offset = 0;
    if let Some(rest) = full.strip_prefix("/local/domain/") {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            local_offset = "/local/domain/".len() + digits;
        }
    }
    if full.len() > local_offset + REL_PATH_MAX {
        return Err(XsError::Einval);
    }
    Ok(full)
}

#[derive(Debug, Clone)]
struct Node {
    value: String,
    perms: Vec<Permission>,
    generation: u64,
    children: BTreeSet<String>,
}

impl Node {
    fn owner(&self) -> DomId {
        self.perms.first().map_or(DOM0, |entry| entry.domid)
    }

    /// The size xenstored accounts for a node (`calc_node_acc_size`): the
    /// 16-byte `struct node_hdr`, 8 bytes per `struct xs_permissions`, the
    /// value and the NUL-terminated children names.
    fn accounted_size(&self) -> usize {
        16 + self.perms.len() * 8
            + self.value.len()
            + self
                .children
                .iter()
                .map(|name| name.len() + 1)
                .sum::<usize>()
    }
}

#[derive(Debug, Clone, Default)]
struct Tree {
    nodes: BTreeMap<String, Node>,
    generation: u64,
}

impl Tree {
    fn bump(&mut self, path: &str) {
        self.generation += 1;
        let generation = self.generation;
        if let Some(node) = self.nodes.get_mut(path) {
            node.generation = generation;
        }
    }

    fn owned_by(&self, domid: DomId) -> usize {
        self.nodes
            .values()
            .filter(|node| node.owner() == domid)
            .count()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Match {
    /// Watches set exactly on the path.
    Exact,
    /// Watches on the path and its ancestors.
    Subtree,
}

/// A watch event waiting to be matched against every domain's watches.
#[derive(Debug)]
struct Fire {
    name: String,
    kind: Match,
    /// Permissions of the node and its parent when the event was made, and
    /// the node's old permissions if they changed.
    node_perms: Option<Vec<Permission>>,
    parent_perms: Option<Vec<Permission>>,
    old_perms: Option<Vec<Permission>>,
}

impl Fire {
    fn permitted(&self, domid: DomId) -> bool {
        if self.name.starts_with('@') {
            return privileged(domid);
        }
        [&self.old_perms, &self.node_perms, &self.parent_perms]
            .into_iter()
            .flatten()
            .any(|perms| perm_for(domid, perms) & PERM_READ != 0)
    }
}

/// A modifying request, kept to replay a transaction at commit.
#[derive(Debug, Clone)]
enum Op {
    Write(String, String),
    Mkdir(String),
    Rm(String),
    SetPerms(String, Vec<Permission>),
}

/// One xenstore request being carried out against a tree.
struct Context<'a> {
    tree: &'a mut Tree,
    domid: DomId,
    /// In a transaction: generation of every node looked at, when first
    /// looked at (`None`: it did not exist).
    accessed: Option<&'a mut BTreeMap<String, Option<u64>>>,
    fires: Vec<Fire>,
}

impl Context<'_> {
    fn lookup(&mut self, path: &str) -> Option<&Node> {
        if let Some(accessed) = self.accessed.as_deref_mut() {
            let generation = self.tree.nodes.get(path).map(|node| node.generation);
            accessed.entry(path.to_string()).or_insert(generation);
        }
        self.tree.nodes.get(path)
    }

    /// Marks a node modified. In a transaction, the node's generation from
    /// before the change is recorded first, so the conflict check compares
    /// against what the live tree had.
    fn touch(&mut self, path: &str) {
        self.lookup(path);
        self.tree.bump(path);
    }

    fn perms_of(&mut self, path: &str) -> Option<Vec<Permission>> {
        self.lookup(path).map(|node| node.perms.clone())
    }

    /// `ask_parents`: the caller's access to the nearest existing ancestor.
    fn parent_access(&mut self, path: &str) -> u8 {
        let mut current = path.to_string();
        while let Some(parent) = parent_of(&current).map(str::to_string) {
            if let Some(perms) = self.perms_of(&parent) {
                return perm_for(self.domid, &perms);
            }
            current = parent;
        }
        0
    }

    /// `get_node` with a permission check: `EACCES` if the node exists
    /// without the access, `ENOENT` if it is missing and the parents would
    /// allow the access, `EACCES` if missing and they would not.
    fn check(&mut self, path: &str, need: u8) -> Result<(), XsError> {
        let domid = self.domid;
        let error = match self.lookup(path) {
            Some(node) if perm_for(domid, &node.perms) & need == need => return Ok(()),
            Some(_) => XsError::Eacces,
            None => XsError::Enoent,
        };
        if self.parent_access(path) & need != 0 {
            Err(error)
        } else {
            Err(XsError::Eacces)
        }
    }

    fn fire(&mut self, path: &str, kind: Match, old_perms: Option<Vec<Permission>>) {
        let node_perms = self.tree.nodes.get(path).map(|node| node.perms.clone());
        let parent_perms = parent_of(path)
            .and_then(|parent| self.tree.nodes.get(parent))
            .map(|node| node.perms.clone());
        self.fires.push(Fire {
            name: path.to_string(),
            kind,
            node_perms,
            parent_perms,
            old_perms,
        });
    }

    fn check_size(&self, node: &Node) -> Result<(), XsError> {
        if !privileged(self.domid) && node.accounted_size() > QUOTA_NODE_SIZE {
            return Err(XsError::Enospc);
        }
        Ok(())
    }

    /// `create_node`: makes `path` and any missing ancestors.
    fn create(&mut self, path: &str, value: &str) -> Result<(), XsError> {
        let mut missing = vec![path.to_string()];
        let mut parent = parent_of(path).ok_or(XsError::Einval)?.to_string();
        while self.lookup(&parent).is_none() {
            missing.push(parent.clone());
            parent = parent_of(&parent).ok_or(XsError::Einval)?.to_string();
        }
        if !privileged(self.domid) && self.tree.owned_by(self.domid) + missing.len() > QUOTA_NODES {
            return Err(XsError::Enospc);
        }
        let mut perms = self.tree.nodes[&parent].perms.clone();
        if !privileged(self.domid) {
            if let Some(owner) = perms.first_mut() {
                owner.domid = self.domid;
            }
        }
        let leaf = Node {
            value: value.to_string(),
            perms: perms.clone(),
            generation: 0,
            children: BTreeSet::new(),
        };
        self.check_size(&leaf)?;
        // The existing parent grows by one child name, which counts against
        // its size as well.
        let mut grown = self.tree.nodes[&parent].clone();
        grown
            .children
            .insert(base_name(missing.last().expect("never empty")).to_string());
        self.check_size(&grown)?;
        // Top down: each new node is a child of the one before.
        let mut above = parent;
        for name in missing.iter().rev() {
            let node = Node {
                value: if name == path {
                    value.to_string()
                } else {
                    String::new()
                },
                perms: perms.clone(),
                generation: 0,
                children: BTreeSet::new(),
            };
            self.tree
                .nodes
                .get_mut(&above)
                .expect("parent exists")
                .children
                .insert(base_name(name).to_string());
            self.touch(&above);
            self.tree.nodes.insert(name.clone(), node);
            self.touch(name);
            above = name.clone();
        }
        Ok(())
    }

    fn read(&mut self, path: &str) -> Result<String, XsError> {
        self.check(path, PERM_READ)?;
        Ok(self.tree.nodes[path].value.clone())
    }

    fn directory(&mut self, path: &str) -> Result<Vec<String>, XsError> {
        self.check(path, PERM_READ)?;
        Ok(self.tree.nodes[path].children.iter().cloned().collect())
    }

    fn get_perms(&mut self, path: &str) -> Result<Vec<Permission>, XsError> {
        self.check(path, PERM_READ)?;
        Ok(self.tree.nodes[path].perms.clone())
    }

    fn write(&mut self, path: &str, value: &str) -> Result<(), XsError> {
        match self.check(path, PERM_WRITE) {
            Ok(()) => {
                let mut node = self.tree.nodes[path].clone();
                node.value = value.to_string();
                self.check_size(&node)?;
                self.tree.nodes.insert(path.to_string(), node);
                self.touch(path);
            }
            Err(XsError::Enoent) => self.create(path, value)?,
            Err(error) => return Err(error),
        }
        self.fire(path, Match::Subtree, None);
        Ok(())
    }

    fn mkdir(&mut self, path: &str) -> Result<(), XsError> {
        match self.check(path, PERM_WRITE) {
            Ok(()) => Ok(()),
            Err(XsError::Enoent) => {
                self.create(path, "")?;
                self.fire(path, Match::Subtree, None);
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    fn rm(&mut self, path: &str) -> Result<(), XsError> {
        match self.check(path, PERM_WRITE) {
            Ok(()) => {}
            Err(XsError::Enoent) => {
                // Removing a missing node is fine if its parent exists.
                let parent = parent_of(path).ok_or(XsError::Einval)?.to_string();
                return match self.lookup(&parent) {
                    Some(_) => Ok(()),
                    None => Err(XsError::Enoent),
                };
            }
            Err(error) => return Err(error),
        }
        if path == "/" {
            return Err(XsError::Einval);
        }
        // Descendants sort after their ancestors, so the reverse order
        // visits every node after all of its children, as xenstored's
        // tree walk does.
        let prefix = format!("{path}/");
        let doomed: Vec<String> = self
            .tree
            .nodes
            .range(path.to_string()..)
            .map(|(name, _)| name)
            .take_while(|name| name.as_str() == path || name.starts_with(&prefix))
            .filter(|name| name.as_str() == path || name.starts_with(&prefix))
            .cloned()
            .collect();
        for name in doomed.iter().rev() {
            self.lookup(name);
            let kind = if name == path {
                Match::Subtree
            } else {
                Match::Exact
            };
            self.fire(name, kind, None);
        }
        for name in &doomed {
            self.tree.nodes.remove(name);
        }
        let parent = parent_of(path).expect("not the root").to_string();
        if let Some(node) = self.tree.nodes.get_mut(&parent) {
            node.children.remove(base_name(path));
        }
        self.touch(&parent);
        Ok(())
    }

    fn set_perms(&mut self, path: &str, perms: &[Permission]) -> Result<(), XsError> {
        if perms.is_empty() {
            return Err(XsError::Einval);
        }
        if !privileged(self.domid) && perms.len() > QUOTA_PERMISSIONS {
            return Err(XsError::Enospc);
        }
        self.check(path, PERM_WRITE | PERM_OWNER)?;
        let old = self.tree.nodes[path].perms.clone();
        if !privileged(self.domid) && perms[0].domid != old[0].domid {
            return Err(XsError::Eperm);
        }
        self.tree.nodes.get_mut(path).expect("checked").perms = perms.to_vec();
        self.touch(path);
        self.fire(path, Match::Subtree, Some(old));
        Ok(())
    }

    fn apply(&mut self, op: &Op) -> Result<(), XsError> {
        match op {
            Op::Write(path, value) => self.write(path, value),
            Op::Mkdir(path) => self.mkdir(path),
            Op::Rm(path) => self.rm(path),
            Op::SetPerms(path, perms) => self.set_perms(path, perms),
        }
    }
}

#[derive(Debug)]
struct Watch {
    node: String,
    token: String,
    /// Bytes to strip from event paths (relative watches).
    prefix_len: usize,
}

#[derive(Debug)]
struct Transaction {
    tree: Tree,
    accessed: BTreeMap<String, Option<u64>>,
    ops: Vec<Op>,
    /// A request failed half-way (the node quota of the transaction ran
    /// out); as in xenstored the commit then fails with `ENOMEM`.
    failed: bool,
}

/// A domain's connection to xenstored.
#[derive(Debug, Default)]
struct Connection {
    watches: Vec<Watch>,
    events: VecDeque<WatchEvent>,
    transactions: BTreeMap<u32, Transaction>,
}

/// The store and every domain's connection to it.
pub(crate) struct Store {
    tree: Tree,
    connections: BTreeMap<DomId, Connection>,
    next_transaction: u32,
}

impl Store {
    pub(crate) fn new() -> Self {
        let mut tree = Tree::default();
        let root_perms = vec![Permission {
            domid: DOM0,
            access: Access::None,
        }];
        tree.nodes.insert(
            "/".to_string(),
            Node {
                value: String::new(),
                perms: root_perms,
                generation: 0,
                children: BTreeSet::new(),
            },
        );
        let mut store = Store {
            tree,
            connections: BTreeMap::new(),
            next_transaction: 1,
        };
        for path in ["/local/domain", "/libxl", "/tool"] {
            store
                .request(DOM0, |context| context.mkdir(path))
                .expect("dom0 can build the initial tree");
        }
        store
    }

    /// Runs a request outside any transaction and delivers its watch events.
    fn request<T>(
        &mut self,
        domid: DomId,
        body: impl FnOnce(&mut Context<'_>) -> Result<T, XsError>,
    ) -> Result<T, XsError> {
        let mut context = Context {
            tree: &mut self.tree,
            domid,
            accessed: None,
            fires: Vec::new(),
        };
        let result = body(&mut context);
        let fires = std::mem::take(&mut context.fires);
        self.deliver(fires);
        result
    }

    fn deliver(&mut self, fires: Vec<Fire>) {
        for fire in fires {
            for (&domid, connection) in &mut self.connections {
                if !fire.permitted(domid) {
                    continue;
                }
                for watch in &connection.watches {
                    let hit = match fire.kind {
                        Match::Exact => fire.name == watch.node,
                        Match::Subtree => is_child(&fire.name, &watch.node),
                    };
                    if hit {
                        connection.events.push_back(WatchEvent {
                            path: fire.name[watch.prefix_len.min(fire.name.len())..].to_string(),
                            token: watch.token.clone(),
                        });
                    }
                }
            }
        }
    }

    /// Runs a request for `domid`, inside transaction `tx` if it is not
    /// [`TxId::NONE`].
    fn run<T>(
        &mut self,
        domid: DomId,
        tx: TxId,
        op: Option<Op>,
        body: impl FnOnce(&mut Context<'_>) -> Result<T, XsError>,
    ) -> Result<T, XsError> {
        if !self.connections.contains_key(&domid) {
            return Err(XsError::Eio);
        }
        if tx == TxId::NONE {
            return self.request(domid, body);
        }
        let transaction = self
            .connections
            .get_mut(&domid)
            .expect("checked")
            .transactions
            .get_mut(&tx.0)
            .ok_or(XsError::Enoent)?;
        let mut context = Context {
            tree: &mut transaction.tree,
            domid,
            accessed: Some(&mut transaction.accessed),
            fires: Vec::new(),
        };
        let result = body(&mut context);
        if !privileged(domid) && transaction.accessed.len() > QUOTA_TRANSACTION_NODES {
            // The snapshot may already hold part of this request.
            transaction.failed = true;
            return Err(XsError::Enospc);
        }
        let result = result?;
        if let Some(op) = op {
            transaction.ops.push(op);
        }
        Ok(result)
    }

    pub(crate) fn introduce_domain(&mut self, domid: DomId, name: &str) {
        self.connections.entry(domid).or_default();
        let home = home_of(domid);
        let read_only = vec![
            Permission {
                domid: DOM0,
                access: Access::None,
            },
            Permission {
                domid,
                access: Access::Read,
            },
        ];
        let writable = vec![Permission {
            domid,
            access: Access::None,
        }];
        let result = self.request(DOM0, |context| {
            context.mkdir(&home)?;
            if domid != DOM0 {
                context.set_perms(&home, &read_only)?;
            }
            context.write(&format!("{home}/name"), name)?;
            context.write(&format!("{home}/domid"), &domid.to_string())?;
            if domid == DOM0 {
                return Ok(());
            }
            for directory in ["device", "control"] {
                context.mkdir(&format!("{home}/{directory}"))?;
            }
            for directory in [
                "control/shutdown",
                "data",
                "drivers",
                "feature",
                "attr",
                "error",
            ] {
                let path = format!("{home}/{directory}");
                context.mkdir(&path)?;
                context.set_perms(&path, &writable)?;
            }
            context.mkdir(&format!("/libxl/{domid}"))
        });
        result.expect("dom0 can create a domain's home");
        self.fires_special("@introduceDomain");
    }

    fn fires_special(&mut self, name: &str) {
        self.deliver(vec![Fire {
            name: name.to_string(),
            kind: Match::Exact,
            node_perms: None,
            parent_perms: None,
            old_perms: None,
        }]);
    }

    /// Drops a dead domain's connection and, as xenstored's
    /// `domain_adjust_node_perms` does, hands its nodes to dom0 and drops
    /// permission entries naming it.
    pub(crate) fn release_domain(&mut self, domid: DomId) {
        self.connections.remove(&domid);
        for node in self.tree.nodes.values_mut() {
            if node.owner() == domid {
                node.perms[0].domid = DOM0;
            }
            let owner = node.perms[0];
            let mut rest: Vec<Permission> = node.perms[1..]
                .iter()
                .copied()
                .filter(|entry| entry.domid != domid)
                .collect();
            rest.insert(0, owner);
            node.perms = rest;
        }
        self.fires_special("@releaseDomain");
    }

    pub(crate) fn take_events(&mut self, domid: DomId) -> Vec<WatchEvent> {
        self.connections
            .get_mut(&domid)
            .map(|connection| connection.events.drain(..).collect())
            .unwrap_or_default()
    }

    /// Takes the queued events carrying `token`, leaving the others;
    /// `None` if there were none.
    pub(crate) fn take_events_with_token(
        &mut self,
        domid: DomId,
        token: &str,
    ) -> Option<Vec<WatchEvent>> {
        let connection = self.connections.get_mut(&domid)?;
        let (taken, kept): (VecDeque<_>, VecDeque<_>) = connection
            .events
            .drain(..)
            .partition(|event| event.token == token);
        connection.events = kept;
        (!taken.is_empty()).then(|| taken.into())
    }

    fn pop_event(&mut self, domid: DomId) -> Option<WatchEvent> {
        self.connections.get_mut(&domid)?.events.pop_front()
    }

    pub(crate) fn dump(&self, path: &str) -> Vec<String> {
        let mut lines = Vec::new();
        let mut stack = vec![path.to_string()];
        while let Some(current) = stack.pop() {
            let Some(node) = self.tree.nodes.get(&current) else {
                continue;
            };
            lines.push(format!(
                "{current} = {:?}   ({})",
                node.value,
                format_perms(&node.perms)
            ));
            for child in node.children.iter().rev() {
                stack.push(child_path(&current, child));
            }
        }
        lines
    }

    fn watch(&mut self, domid: DomId, path: &str, token: &str) -> Result<(), XsError> {
        if path.len() + token.len() + 2 > PAYLOAD_MAX {
            return Err(XsError::E2big);
        }
        let relative = !path.starts_with('/') && !path.starts_with('@');
        let node = canonicalize(domid, path, true)?;
        let connection = self.connections.get_mut(&domid).ok_or(XsError::Eio)?;
        if connection
            .watches
            .iter()
            .any(|watch| watch.node == node && watch.token == token)
        {
            return Err(XsError::Eexist);
        }
        if !privileged(domid) && connection.watches.len() >= QUOTA_WATCHES {
            return Err(XsError::Enospc);
        }
        let prefix_len = if relative {
            home_of(domid).len() + 1
        } else {
            0
        };
        // xenstored fires every new watch once, straight away.
        connection.events.push_back(WatchEvent {
            path: node[prefix_len..].to_string(),
            token: token.to_string(),
        });
        connection.watches.push(Watch {
            node,
            token: token.to_string(),
            prefix_len,
        });
        Ok(())
    }

    fn unwatch(&mut self, domid: DomId, path: &str, token: &str) -> Result<(), XsError> {
        let node = canonicalize(domid, path, true)?;
        let connection = self.connections.get_mut(&domid).ok_or(XsError::Eio)?;
        let index = connection
            .watches
            .iter()
            .position(|watch| watch.node == node && watch.token == token)
            .ok_or(XsError::Enoent)?;
        connection.watches.remove(index);
        Ok(())
    }

    fn transaction_start(&mut self, domid: DomId) -> Result<TxId, XsError> {
        let snapshot = self.tree.clone();
        let connection = self.connections.get_mut(&domid).ok_or(XsError::Eio)?;
        if !privileged(domid) && connection.transactions.len() >= QUOTA_TRANSACTIONS {
            return Err(XsError::Enospc);
        }
        let id = self.next_transaction;
        self.next_transaction = self.next_transaction.checked_add(1).unwrap_or(1);
        connection.transactions.insert(
            id,
            Transaction {
                tree: snapshot,
                accessed: BTreeMap::new(),
                ops: Vec::new(),
                failed: false,
            },
        );
        Ok(TxId(id))
    }

    fn transaction_end(&mut self, domid: DomId, tx: TxId, commit: bool) -> Result<(), XsError> {
        let connection = self.connections.get_mut(&domid).ok_or(XsError::Eio)?;
        let transaction = connection
            .transactions
            .remove(&tx.0)
            .ok_or(XsError::Enoent)?;
        if !commit {
            return Ok(());
        }
        if transaction.failed {
            return Err(XsError::Enomem);
        }
        let conflict = transaction.accessed.iter().any(|(path, generation)| {
            self.tree.nodes.get(path).map(|node| node.generation) != *generation
        });
        if conflict {
            return Err(XsError::Eagain);
        }
        // Nothing the transaction depended on changed, so replaying its
        // requests on the live tree has exactly the effect they had on the
        // snapshot, and fires their watches now.
        self.request(domid, |context| {
            for op in &transaction.ops {
                context.apply(op)?;
            }
            Ok(())
        })
    }
}

impl Domain {
    /// Takes the oldest queued watch event, if any.
    pub fn poll_watch(&self) -> Option<WatchEvent> {
        self.hypervisor.lock().store.pop_event(self.domid)
    }

    /// Takes every queued watch event, oldest first.
    pub fn poll_watches(&self) -> Vec<WatchEvent> {
        self.hypervisor.lock().store.take_events(self.domid)
    }

    /// Waits up to `timeout` for a watch event and takes it.
    pub fn wait_watch(&self, timeout: Duration) -> Option<WatchEvent> {
        let domid = self.domid;
        self.hypervisor
            .wait_until(timeout, |state| state.store.pop_event(domid))
    }

    fn xenstore<T>(
        &self,
        tx: TxId,
        op: Option<Op>,
        body: impl FnOnce(&mut Context<'_>) -> Result<T, XsError>,
    ) -> Result<T, XsError> {
        let result = self.hypervisor.lock().store.run(self.domid, tx, op, body);
        self.hypervisor.wake_all();
        result
    }

    fn path(&self, path: &str) -> Result<String, XsError> {
        canonicalize(self.domid, path, false)
    }
}

impl Xenstore for Domain {
    fn read(&mut self, tx: TxId, path: &str) -> Result<String, XsError> {
        let path = self.path(path)?;
        self.xenstore(tx, None, |context| context.read(&path))
    }

    fn write(&mut self, tx: TxId, path: &str, value: &str) -> Result<(), XsError> {
        if path.len() + 1 + value.len() > PAYLOAD_MAX {
            return Err(XsError::E2big);
        }
        let path = self.path(path)?;
        let op = Op::Write(path.clone(), value.to_string());
        self.xenstore(tx, Some(op), |context| context.write(&path, value))
    }

    fn mkdir(&mut self, tx: TxId, path: &str) -> Result<(), XsError> {
        let path = self.path(path)?;
        let op = Op::Mkdir(path.clone());
        self.xenstore(tx, Some(op), |context| context.mkdir(&path))
    }

    fn rm(&mut self, tx: TxId, path: &str) -> Result<(), XsError> {
        let path = self.path(path)?;
        let op = Op::Rm(path.clone());
        self.xenstore(tx, Some(op), |context| context.rm(&path))
    }

    fn directory(&mut self, tx: TxId, path: &str) -> Result<Vec<String>, XsError> {
        let path = self.path(path)?;
        self.xenstore(tx, None, |context| context.directory(&path))
    }

    fn get_perms(&mut self, tx: TxId, path: &str) -> Result<Vec<Permission>, XsError> {
        let path = self.path(path)?;
        self.xenstore(tx, None, |context| context.get_perms(&path))
    }

    fn set_perms(&mut self, tx: TxId, path: &str, perms: &[Permission]) -> Result<(), XsError> {
        let path = self.path(path)?;
        let op = Op::SetPerms(path.clone(), perms.to_vec());
        self.xenstore(tx, Some(op), |context| context.set_perms(&path, perms))
    }

    fn watch(&mut self, path: &str, token: &str) -> Result<(), XsError> {
        let result = self.hypervisor.lock().store.watch(self.domid, path, token);
        self.hypervisor.wake_all();
        result
    }

    fn unwatch(&mut self, path: &str, token: &str) -> Result<(), XsError> {
        self.hypervisor
            .lock()
            .store
            .unwatch(self.domid, path, token)
    }

    fn transaction_start(&mut self) -> Result<TxId, XsError> {
        self.hypervisor.lock().store.transaction_start(self.domid)
    }

    fn transaction_end(&mut self, tx: TxId, commit: bool) -> Result<(), XsError> {
        let result = self
            .hypervisor
            .lock()
            .store
            .transaction_end(self.domid, tx, commit);
        self.hypervisor.wake_all();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths() {
        assert_eq!(
            canonicalize(3, "device/vbd", false).unwrap(),
            "/local/domain/3/device/vbd"
        );
        assert_eq!(canonicalize(3, "/", false).unwrap(), "/");
        for bad in ["", "/a/", "/a//b", "/a b", "@x", "/a\u{e9}"] {
            assert_eq!(canonicalize(3, bad, false), Err(XsError::Einval), "{bad:?}");
        }
        assert_eq!(
            canonicalize(3, "@releaseDomain", true).unwrap(),
            "@releaseDomain"
        );
        let long = format!("/local/domain/3/{}", "a".repeat(REL_PATH_MAX));
        assert_eq!(canonicalize(3, &long, false), Err(XsError::Einval));
        let fits = format!("/local/domain/3/{}", "a".repeat(REL_PATH_MAX - 1));
        assert!(canonicalize(3, &fits, false).is_ok());
    }

    #[test]
    fn child_relation() {
        assert!(is_child("/a/b", "/a"));
        assert!(is_child("/a", "/a"));
        assert!(!is_child("/ab", "/a"));
        assert!(is_child("/a", "/"));
    }

    #[test]
    fn permission_rules() {
        let perms = [
            Permission {
                domid: 4,
                access: Access::None,
            },
            Permission {
                domid: 5,
                access: Access::Read,
            },
        ];
        assert_eq!(perm_for(4, &perms), PERM_READ | PERM_WRITE | PERM_OWNER);
        assert_eq!(perm_for(0, &perms), PERM_READ | PERM_WRITE | PERM_OWNER);
        assert_eq!(perm_for(5, &perms), PERM_READ);
        assert_eq!(perm_for(6, &perms), 0);
        assert_eq!(format_perms(&perms), "n4,r5");
    }
}
