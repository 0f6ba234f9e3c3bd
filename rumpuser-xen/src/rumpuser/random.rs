//! `rumpuser_getrandom`: the host's random pool.
//!
//! Output is the keystream of a ChaCha20 generator (RFC 8439 block
//! function) that changes its key after every request, so a key read out
//! of memory later does not reveal earlier output. When the machine has a
//! hardware generator (RDRAND on x86) every 8 bytes of output are also
//! XORed with a fresh hardware word, so the output is at least as good as
//! the better of the two.
//!
//! The key is seeded in `rumpuser_init` from everything the host offers
//! ([`Host::seed_material`]) plus, if
//! present, four hardware words. Seed material is folded into the key 32
//! bytes at a time: XOR into the key, then replace the key with the first
//! half of a ChaCha20 block under it. Without a hardware generator the
//! quality of the output is that of the seed material; see
//! `docs/rumpuser.md` for what the Xen host uses.

use core::ffi::{c_int, c_void};

use super::abi::errno::EINVAL;
use super::abi::{RUMPUSER_RANDOM_HARD, RUMPUSER_RANDOM_NOWAIT};
use super::host::Host;
use super::state::{host, STATE};

/// The ChaCha20 block function: 64 bytes of keystream for `key`,
/// `counter` and `nonce` (RFC 8439, section 2.3).
pub fn chacha20_block(key: &[u32; 8], counter: u32, nonce: &[u32; 3]) -> [u8; 64] {
    let mut initial = [0u32; 16];
    initial[..4].copy_from_slice(&[0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574]);
    initial[4..12].copy_from_slice(key);
    initial[12] = counter;
    initial[13..].copy_from_slice(nonce);
    let mut state = initial;
    fn quarter_round(state: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize) {
        state[a] = state[a].wrapping_add(state[b]);
        state[d] = (state[d] ^ state[a]).rotate_left(16);
        state[c] = state[c].wrapping_add(state[d]);
        state[b] = (state[b] ^ state[c]).rotate_left(12);
        state[a] = state[a].wrapping_add(state[b]);
        state[d] = (state[d] ^ state[a]).rotate_left(8);
        state[c] = state[c].wrapping_add(state[d]);
        state[b] = (state[b] ^ state[c]).rotate_left(7);
    }
    for _ in 0..10 {
        quarter_round(&mut state, 0, 4, 8, 12);
        quarter_round(&mut state, 1, 5, 9, 13);
        quarter_round(&mut state, 2, 6, 10, 14);
        quarter_round(&mut state, 3, 7, 11, 15);
        quarter_round(&mut state, 0, 5, 10, 15);
        quarter_round(&mut state, 1, 6, 11, 12);
        quarter_round(&mut state, 2, 7, 8, 13);
        quarter_round(&mut state, 3, 4, 9, 14);
    }
    let mut out = [0u8; 64];
    for (index, word) in state.iter().enumerate() {
        let value = word.wrapping_add(initial[index]);
        out[index * 4..index * 4 + 4].copy_from_slice(&value.to_le_bytes());
    }
    out
}

fn words(bytes: &[u8]) -> [u32; 8] {
    let mut key = [0u32; 8];
    for (index, chunk) in bytes.chunks_exact(4).take(8).enumerate() {
        key[index] = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    key
}

/// Nonce of the blocks that fold seed material into the key; output blocks
/// use a zero nonce, so the two uses never share a block.
const ABSORB_NONCE: [u32; 3] = [0x5345_4544, 0, 0];

/// A fast-key-erasure ChaCha20 generator.
pub struct Generator {
    key: [u32; 8],
}

impl Generator {
    /// A generator with an all-zero key, to be seeded with [`Self::absorb`].
    pub const fn unseeded() -> Self {
        Self { key: [0; 8] }
    }

    /// Folds `material` into the key.
    pub fn absorb(&mut self, material: &[u8]) {
        for chunk in material.chunks(32) {
            let mut padded = [0u8; 32];
            padded[..chunk.len()].copy_from_slice(chunk);
            // The length goes in too, so "ab" and "ab\0" differ.
            padded[31] ^= chunk.len() as u8;
            for (key_word, word) in self.key.iter_mut().zip(words(&padded)) {
                *key_word ^= word;
            }
            self.key = words(&chacha20_block(&self.key, 0, &ABSORB_NONCE)[..32]);
        }
    }

    /// Fills `out` with keystream, then moves to a new key.
    pub fn fill(&mut self, out: &mut [u8]) {
        let mut counter = 1u32;
        for chunk in out.chunks_mut(64) {
            let block = chacha20_block(&self.key, counter, &[0; 3]);
            chunk.copy_from_slice(&block[..chunk.len()]);
            counter = counter.wrapping_add(1);
        }
        // Block 0 is never output: it becomes the next key.
        self.key = words(&chacha20_block(&self.key, 0, &[0; 3])[..32]);
    }
}

/// Seeds the generator; called by `rumpuser_init`.
pub(crate) fn seed(host: &dyn Host) {
    let mut generator = Generator::unseeded();
    host.seed_material(&mut |material| generator.absorb(material));
    for _ in 0..4 {
        if let Some(word) = host.hardware_random() {
            generator.absorb(&word.to_le_bytes());
        }
    }
    STATE.with(|state| state.random = Some(generator));
}

/// `rumpuser_getrandom`: fills `buf` with `buflen` random bytes and stores
/// the count in `retp`. Never blocks, so `RUMPUSER_RANDOM_NOWAIT` changes
/// nothing; `RUMPUSER_RANDOM_HARD` is served the same way (see the module
/// documentation). `EINVAL` for unknown flags.
///
/// # Safety
///
/// `buf` must be valid for `buflen` bytes of writes and `retp` for a write.
#[no_mangle]
pub unsafe extern "C" fn rumpuser_getrandom(
    buf: *mut c_void,
    buflen: usize,
    flags: c_int,
    retp: *mut usize,
) -> c_int {
    if flags & !(RUMPUSER_RANDOM_HARD | RUMPUSER_RANDOM_NOWAIT) != 0 {
        return EINVAL;
    }
    let host = host();
    let unseeded = STATE.with(|state| state.random.is_none());
    if unseeded {
        seed(host);
    }
    if buflen == 0 {
        // Nothing to write, and `buf` may be null.
        // SAFETY: the caller passes a writable pointer.
        unsafe { retp.write(0) };
        return 0;
    }
    // SAFETY: the caller passes `buflen` (non-zero) writable bytes.
    let out = unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), buflen) };
    STATE.with(|state| {
        if let Some(generator) = state.random.as_mut() {
            generator.fill(out);
        }
    });
    for chunk in out.chunks_mut(8) {
        match host.hardware_random() {
            Some(word) => {
                for (byte, hardware) in chunk.iter_mut().zip(word.to_le_bytes()) {
                    *byte ^= hardware;
                }
            }
            None => break,
        }
    }
    // SAFETY: the caller passes a writable pointer.
    unsafe { retp.write(buflen) };
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_function_matches_rfc_8439() {
        // RFC 8439, section 2.3.2: key 00 01 .. 1f, counter 1,
        // nonce 00:00:00:09:00:00:00:4a:00:00:00:00.
        let key_bytes: [u8; 32] = core::array::from_fn(|index| index as u8);
        let nonce = [0x0900_0000, 0x4a00_0000, 0];
        let block = chacha20_block(&words(&key_bytes), 1, &nonce);
        let expected: [u8; 64] = [
            0x10, 0xf1, 0xe7, 0xe4, 0xd1, 0x3b, 0x59, 0x15, 0x50, 0x0f, 0xdd, 0x1f, 0xa3, 0x20,
            0x71, 0xc4, 0xc7, 0xd1, 0xf4, 0xc7, 0x33, 0xc0, 0x68, 0x03, 0x04, 0x22, 0xaa, 0x9a,
            0xc3, 0xd4, 0x6c, 0x4e, 0xd2, 0x82, 0x64, 0x46, 0x07, 0x9f, 0xaa, 0x09, 0x14, 0xc2,
            0xd7, 0x05, 0xd9, 0x8b, 0x02, 0xa2, 0xb5, 0x12, 0x9c, 0xd1, 0xde, 0x16, 0x4e, 0xb9,
            0xcb, 0xd0, 0x83, 0xe8, 0xa2, 0x50, 0x3c, 0x4e,
        ];
        assert_eq!(block, expected);
    }

    #[test]
    fn seed_material_and_key_erasure_change_the_output() {
        let mut first = Generator::unseeded();
        first.absorb(b"instance one");
        let mut second = Generator::unseeded();
        second.absorb(b"instance two");
        let (mut a, mut b) = ([0u8; 40], [0u8; 40]);
        first.fill(&mut a);
        second.fill(&mut b);
        assert_ne!(a, b);
        // The same generator never repeats a request's output.
        let mut again = [0u8; 40];
        first.fill(&mut again);
        assert_ne!(a, again);
        // Padding is not mistaken for data.
        let mut short = Generator::unseeded();
        short.absorb(b"ab");
        let mut padded = Generator::unseeded();
        padded.absorb(b"ab\0");
        assert_ne!(short.key, padded.key);
    }
}
