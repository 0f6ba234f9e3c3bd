//! The platform traits that backend engines are generic over.
//!
//! This is the whole surface a protocol engine (`blkback`, `netback`) sees of
//! the hypervisor: event channels, grant copy and grant map, and xenstore.
//! `xensim` implements it over a simulated hypervisor for tests and
//! benchmarks; `rumpuser-xen` implements it over real hypercalls. Engines
//! never block: they call these methods and return, and the platform's main
//! loop feeds them the events (event channel fired, watch fired, I/O done).

use alloc::string::String;
use alloc::vec::Vec;

use xen_ring::SharedMemory;

/// A domain id (`domid_t`).
pub type DomId = u16;
/// A grant reference (`grant_ref_t`).
pub type GrantRef = u32;
/// An event channel port (`evtchn_port_t`).
pub type EvtchnPort = u32;

/// The domain id that names the caller itself (`DOMID_SELF`).
pub const DOMID_SELF: DomId = 0x7ff0;

/// Why a grant operation failed; one variant per `GNTST_*` status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantError {
    /// GNTST_general_error (-1): general undefined error.
    GeneralError,
    /// GNTST_bad_domain (-2): unrecognised domain id.
    BadDomain,
    /// GNTST_bad_gntref (-3): unrecognised or inappropriate grant reference.
    BadGntref,
    /// GNTST_bad_handle (-4): unrecognised or inappropriate map handle.
    BadHandle,
    /// GNTST_bad_virt_addr (-5): inappropriate virtual address to map.
    BadVirtAddr,
    /// GNTST_bad_dev_addr (-6): inappropriate device address to unmap.
    BadDevAddr,
    /// GNTST_no_device_space (-7): out of space in the I/O MMU.
    NoDeviceSpace,
    /// GNTST_permission_denied (-8): not enough privilege for the operation.
    PermissionDenied,
    /// GNTST_bad_page (-9): the specified page was invalid for the operation.
    BadPage,
    /// GNTST_bad_copy_arg (-10): the copy extends past a page boundary.
    BadCopyArg,
    /// GNTST_address_too_big (-11): the transfer destination is too large.
    AddressTooBig,
    /// GNTST_eagain (-12): the operation is not done yet; try again.
    Eagain,
    /// GNTST_no_space (-13): out of space (handles etc.).
    NoSpace,
}

impl GrantError {
    /// Maps a negative `GNTST_*` status to its variant; any unknown code is
    /// reported as `GeneralError`. Returns `None` for `GNTST_okay` (0).
    pub fn from_status(status: i16) -> Option<Self> {
        Some(match status {
            0 => return None,
            -2 => Self::BadDomain,
            -3 => Self::BadGntref,
            -4 => Self::BadHandle,
            -5 => Self::BadVirtAddr,
            -6 => Self::BadDevAddr,
            -7 => Self::NoDeviceSpace,
            -8 => Self::PermissionDenied,
            -9 => Self::BadPage,
            -10 => Self::BadCopyArg,
            -11 => Self::AddressTooBig,
            -12 => Self::Eagain,
            -13 => Self::NoSpace,
            _ => Self::GeneralError,
        })
    }

    /// The `GNTST_*` status code of this error.
    pub fn status(self) -> i16 {
        match self {
            Self::GeneralError => -1,
            Self::BadDomain => -2,
            Self::BadGntref => -3,
            Self::BadHandle => -4,
            Self::BadVirtAddr => -5,
            Self::BadDevAddr => -6,
            Self::NoDeviceSpace => -7,
            Self::PermissionDenied => -8,
            Self::BadPage => -9,
            Self::BadCopyArg => -10,
            Self::AddressTooBig => -11,
            Self::Eagain => -12,
            Self::NoSpace => -13,
        }
    }
}

/// One side of a grant copy that lives in another domain's granted page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantSpan {
    /// The domain that granted the page.
    pub domid: DomId,
    /// The grant reference, in that domain's grant table.
    pub gref: GrantRef,
    /// Byte offset inside the 4 KiB page.
    pub offset: u16,
}

/// One operation of a batched `GNTTABOP_copy`.
///
/// The platform checks what Xen checks: `offset + length` must stay inside
/// the page, the grant must be valid and give the needed access. Local
/// buffers may be any length up to a page; how they map onto frames is the
/// platform's business.
#[derive(Debug)]
pub enum CopyOp<'a> {
    /// Copy `destination.len()` bytes out of a granted page.
    FromGrant {
        /// Where to read in the other domain.
        source: GrantSpan,
        /// Local buffer to fill.
        destination: &'a mut [u8],
    },
    /// Copy `source` into a granted page.
    ToGrant {
        /// Local bytes to write.
        source: &'a [u8],
        /// Where to write in the other domain.
        destination: GrantSpan,
    },
    /// Copy `length` bytes between two other domains' granted pages.
    GrantToGrant {
        /// Where to read.
        source: GrantSpan,
        /// Where to write.
        destination: GrantSpan,
        /// Number of bytes.
        length: u16,
    },
}

/// Grant copy: the main data path.
pub trait GrantCopy {
    /// Performs every operation, as one batch where the platform can, and
    /// writes the outcome of `ops[i]` to `status[i]`. A failed operation does
    /// not stop the others. `status.len()` must equal `ops.len()`.
    fn copy(&mut self, ops: &mut [CopyOp<'_>], status: &mut [Result<(), GrantError>]);
}

/// Grant map: used for shared rings (and optionally persistent data pages).
pub trait GrantMap {
    /// Pages of another domain mapped contiguously into this one.
    type Mapping: SharedMemory;

    /// Maps `grefs` of `domid`, in order, as one contiguous mapping.
    /// `writable = false` maps read-only.
    fn map(
        &mut self,
        domid: DomId,
        grefs: &[GrantRef],
        writable: bool,
    ) -> Result<Self::Mapping, GrantError>;

    /// Unmaps a mapping made by [`GrantMap::map`].
    fn unmap(&mut self, mapping: Self::Mapping);
}

/// Why an event channel operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvtchnError {
    /// The remote domain or port does not exist.
    NoSuchPort,
    /// The remote port is not unbound or not offered to this domain.
    NotBindable,
    /// This domain has no free ports.
    NoFreePort,
    /// Any other failure reported by the hypervisor.
    Other,
}

/// Event channels.
pub trait EventChannels {
    /// Binds a local port to `remote_port`, which `remote` allocated unbound for us.
    fn bind_interdomain(
        &mut self,
        remote: DomId,
        remote_port: EvtchnPort,
    ) -> Result<EvtchnPort, EvtchnError>;

    /// Sends an event to the other end of `port`.
    fn notify(&mut self, port: EvtchnPort);

    /// Unmasks `port`, so further events on it are delivered.
    fn unmask(&mut self, port: EvtchnPort);

    /// Closes `port`.
    fn close(&mut self, port: EvtchnPort);
}

/// A xenstore transaction id; [`TxId::NONE`] means no transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TxId(pub u32);

impl TxId {
    /// Outside any transaction.
    pub const NONE: TxId = TxId(0);
}

/// Why a xenstore request failed; the variants are xenstored's error names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XsError {
    /// EINVAL: invalid argument.
    Einval,
    /// EACCES: permission denied.
    Eacces,
    /// EEXIST: the node exists.
    Eexist,
    /// EISDIR: the node is a directory.
    Eisdir,
    /// ENOENT: no such node.
    Enoent,
    /// ENOMEM: out of memory.
    Enomem,
    /// ENOSPC: no space left.
    Enospc,
    /// EIO: input/output error.
    Eio,
    /// ENOTEMPTY: the directory is not empty.
    Enotempty,
    /// ENOSYS: the operation is not implemented.
    Enosys,
    /// EROFS: the store is read-only.
    Erofs,
    /// EBUSY: the store is busy.
    Ebusy,
    /// EAGAIN: the transaction conflicted; retry it.
    Eagain,
    /// EISCONN: already connected.
    Eisconn,
    /// E2BIG: the request or value is too big.
    E2big,
    /// EPERM: operation not permitted.
    Eperm,
    /// EQUOTA: the domain's quota is exhausted.
    Equota,
    /// The reply was malformed or an unknown error name.
    Protocol,
}

/// One entry of a node's permission list (`GET_PERMS`/`SET_PERMS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    /// The domain this entry is about. The first entry names the owner.
    pub domid: DomId,
    /// The access granted to `domid` (for the first entry: to everyone else).
    pub access: Access,
}

/// Access letters of xenstore permissions: `n`, `r`, `w`, `b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `n`: no access.
    None,
    /// `r`: read.
    Read,
    /// `w`: write.
    Write,
    /// `b`: read and write.
    Both,
}

/// Xenstore access, as a client domain sees it. Paths are absolute
/// (`/local/domain/...`) or relative to the caller's home
/// (`/local/domain/<own domid>`). Watch events do not come through this
/// trait: the platform's loop receives them and passes them to the engine.
pub trait Xenstore {
    /// Reads a node's value.
    fn read(&mut self, tx: TxId, path: &str) -> Result<String, XsError>;
    /// Writes a node, creating it (and missing parents) if needed.
    fn write(&mut self, tx: TxId, path: &str, value: &str) -> Result<(), XsError>;
    /// Creates a directory node.
    fn mkdir(&mut self, tx: TxId, path: &str) -> Result<(), XsError>;
    /// Removes a node and everything below it.
    fn rm(&mut self, tx: TxId, path: &str) -> Result<(), XsError>;
    /// Lists a node's children (names, not paths).
    fn directory(&mut self, tx: TxId, path: &str) -> Result<Vec<String>, XsError>;
    /// Reads a node's permissions.
    fn get_perms(&mut self, tx: TxId, path: &str) -> Result<Vec<Permission>, XsError>;
    /// Sets a node's permissions.
    fn set_perms(&mut self, tx: TxId, path: &str, perms: &[Permission]) -> Result<(), XsError>;
    /// Watches `path` and everything below it; events carry `token`.
    fn watch(&mut self, path: &str, token: &str) -> Result<(), XsError>;
    /// Removes a watch.
    fn unwatch(&mut self, path: &str, token: &str) -> Result<(), XsError>;
    /// Starts a transaction.
    fn transaction_start(&mut self) -> Result<TxId, XsError>;
    /// Ends a transaction; `commit = false` aborts it. A conflicting commit
    /// fails with [`XsError::Eagain`].
    fn transaction_end(&mut self, tx: TxId, commit: bool) -> Result<(), XsError>;
}
