//! A mock blkfront (Linux xen-blkfront-like and GNU Mach-like).
