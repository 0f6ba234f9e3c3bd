//! Xen public ABI (generated from `/usr/include/xen` by bindgen).
#![no_std]
