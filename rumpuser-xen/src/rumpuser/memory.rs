//! Memory hypercalls: `rumpuser_malloc`, `rumpuser_free`,
//! `rumpuser_anonmmap`, `rumpuser_unmap`, all from the platform's heap.
//!
//! `rumpuser_free` gets the length but not the alignment, and the
//! allocator wants both back; allocations aligned beyond
//! [`DEFAULT_ALIGNMENT`] have theirs noted in the state until freed.

use alloc::alloc::{alloc, alloc_zeroed, dealloc, Layout};
use core::ffi::{c_int, c_void};

use super::abi::errno::{EINVAL, ENOMEM};
use super::state::STATE;

/// The alignment of allocations that ask for less (or for none, with 0).
pub const DEFAULT_ALIGNMENT: usize = 16;

/// The page size `rumpuser_anonmmap` aligns to at least.
const PAGE_SIZE: usize = 4096;

fn layout(length: usize, alignment: usize) -> Option<Layout> {
    Layout::from_size_align(length.max(1), alignment).ok()
}

fn allocate(length: usize, alignment: usize, zeroed: bool) -> Result<*mut c_void, c_int> {
    if alignment != 0 && !alignment.is_power_of_two() {
        return Err(EINVAL);
    }
    let alignment = alignment.max(DEFAULT_ALIGNMENT);
    let layout = layout(length, alignment).ok_or(EINVAL)?;
    // SAFETY: `layout` has a non-zero size.
    let pointer = unsafe {
        if zeroed {
            alloc_zeroed(layout)
        } else {
            alloc(layout)
        }
    };
    if pointer.is_null() {
        return Err(ENOMEM);
    }
    if alignment > DEFAULT_ALIGNMENT {
        STATE.with(|state| state.alignments.insert(pointer as usize, alignment));
    }
    Ok(pointer.cast())
}

/// # Safety
///
/// `pointer` and `length` must describe a live allocation from [`allocate`].
unsafe fn release(pointer: *mut c_void, length: usize) {
    if pointer.is_null() {
        return;
    }
    let alignment = STATE
        .with(|state| state.alignments.remove(&(pointer as usize)))
        .unwrap_or(DEFAULT_ALIGNMENT);
    let layout = layout(length, alignment).expect("rumpuser: free of a length never allocated");
    // SAFETY: the caller passes an allocation made by `allocate` with this
    // length; its alignment is the one noted (or the default).
    unsafe { dealloc(pointer.cast(), layout) };
}

/// `rumpuser_malloc`: `len` bytes aligned to `alignment` (a power of two,
/// or 0 for the default), into `*memp`. 0, `EINVAL` or `ENOMEM`.
///
/// # Safety
///
/// `memp` must be valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_malloc(
    len: usize,
    alignment: c_int,
    memp: *mut *mut c_void,
) -> c_int {
    let Ok(alignment) = usize::try_from(alignment) else {
        return EINVAL;
    };
    match allocate(len, alignment, false) {
        Ok(pointer) => {
            // SAFETY: the caller passes a writable pointer.
            unsafe { memp.write(pointer) };
            0
        }
        Err(error) => error,
    }
}

/// `rumpuser_free`: frees what `rumpuser_malloc` gave for `len` bytes.
///
/// # Safety
///
/// `mem` must come from `rumpuser_malloc(len, ...)` and not be used again.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_free(mem: *mut c_void, len: usize) {
    // SAFETY: forwarded from the caller.
    unsafe { release(mem, len) };
}

/// `rumpuser_anonmmap`: `size` bytes of zeroed memory aligned to
/// `2^alignbit` (and at least a page). The preferred address is a hint
/// this platform has no use for. `exec` is honoured by construction: the
/// heap is mapped without the no-execute bit.
///
/// # Safety
///
/// `memp` must be valid for a pointer write.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_anonmmap(
    _prefaddr: *mut c_void,
    size: usize,
    alignbit: c_int,
    _exec: c_int,
    memp: *mut *mut c_void,
) -> c_int {
    let Some(alignment) = u32::try_from(alignbit)
        .ok()
        .and_then(|bits| 1usize.checked_shl(bits))
    else {
        return EINVAL;
    };
    match allocate(size, alignment.max(PAGE_SIZE), true) {
        Ok(pointer) => {
            // SAFETY: the caller passes a writable pointer.
            unsafe { memp.write(pointer) };
            0
        }
        Err(error) => error,
    }
}

/// `rumpuser_unmap`: frees what `rumpuser_anonmmap` gave.
///
/// # Safety
///
/// `addr` must come from `rumpuser_anonmmap(.., size, ..)` and not be used
/// again.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_unmap(addr: *mut c_void, size: usize) {
    // SAFETY: forwarded from the caller.
    unsafe { release(addr, size) };
}
