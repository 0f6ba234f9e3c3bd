//! rumpuser-xen: the platform layer of the driver domains.
#![no_std]
