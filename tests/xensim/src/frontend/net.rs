//! A mock netfront (Linux xen-netfront-like and GNU Mach-like).
