//! Devices for tests: a file-backed disk, a disk that completes out of
//! order and records what it saw, a disk that runs a hook at submission,
//! and a disk that holds its completions until told to let them go.
#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::rc::Rc;

use blkback::{
    BlockDevice, DeviceInfo, IoCompletion, IoError, IoRequest, IoTag, RamDisk, SubmitError,
};

use super::Rng;

/// A disk backed by a host file (the host-side stand-in for a real disk).
pub struct FileDisk {
    file: File,
    sectors: u64,
    completions: VecDeque<IoCompletion>,
}

impl FileDisk {
    /// Uses `file`, sized to `sectors` 512-byte sectors.
    pub fn new(file: File, sectors: u64) -> std::io::Result<Self> {
        file.set_len(sectors * 512)?;
        Ok(FileDisk {
            file,
            sectors,
            completions: VecDeque::new(),
        })
    }
}

impl BlockDevice for FileDisk {
    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            sectors: self.sectors,
            physical_sector_size: 4096,
            read_only: false,
            flush: true,
            discard: None,
            removable: false,
            queue_depth: 32,
        }
    }

    fn submit(&mut self, tag: IoTag, request: IoRequest) -> Result<(), SubmitError> {
        if self.completions.len() >= 32 {
            return Err(SubmitError::QueueFull(request));
        }
        let (result, buffer) = match request {
            IoRequest::Read { sector, mut buffer } => {
                let result = self.file.read_exact_at(&mut buffer, sector * 512);
                (result.map_err(|_| IoError::Media), buffer)
            }
            IoRequest::Write { sector, buffer } => {
                let result = self.file.write_all_at(&buffer, sector * 512);
                (result.map_err(|_| IoError::Media), buffer)
            }
            IoRequest::Flush => (
                self.file.sync_data().map_err(|_| IoError::Media),
                Vec::new(),
            ),
            IoRequest::Discard { .. } => (Err(IoError::NotSupported), Vec::new()),
        };
        self.completions.push_back(IoCompletion {
            tag,
            result,
            buffer,
        });
        Ok(())
    }

    fn poll_completion(&mut self) -> Option<IoCompletion> {
        self.completions.pop_front()
    }
}

/// What the device saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A write of the given first sector was submitted.
    SubmitWrite(u64),
    /// A write of the given first sector completed.
    CompleteWrite(u64),
    /// A flush was submitted.
    SubmitFlush,
    /// A flush completed.
    CompleteFlush,
}

/// A RAM disk that holds completions back and releases them in a seeded
/// random order, recording every submission and completion.
pub struct Reorder {
    inner: RamDisk,
    held: Vec<(IoCompletion, Option<u64>)>,
    rng: Rng,
    pub log: Rc<RefCell<Vec<Seen>>>,
}

impl Reorder {
    pub fn new(sectors: u64, seed: u64) -> Self {
        let mut inner = RamDisk::new(sectors).unwrap();
        inner.set_queue_depth(1024).unwrap();
        Reorder {
            inner,
            held: Vec::new(),
            rng: Rng::new(seed),
            log: Rc::new(RefCell::new(Vec::new())),
        }
    }
}

impl BlockDevice for Reorder {
    fn info(&self) -> DeviceInfo {
        self.inner.info()
    }

    fn submit(&mut self, tag: IoTag, request: IoRequest) -> Result<(), SubmitError> {
        let write_sector = match &request {
            IoRequest::Write { sector, .. } => {
                self.log.borrow_mut().push(Seen::SubmitWrite(*sector));
                Some(*sector)
            }
            IoRequest::Flush => {
                self.log.borrow_mut().push(Seen::SubmitFlush);
                None
            }
            _ => None,
        };
        self.inner.submit(tag, request)?;
        let completion = self
            .inner
            .poll_completion()
            .expect("the RAM disk completes at once");
        self.held.push((completion, write_sector));
        Ok(())
    }

    fn poll_completion(&mut self) -> Option<IoCompletion> {
        // Sometimes release nothing, so that requests stay in flight across polls.
        if self.held.is_empty() || self.rng.below(3) == 0 {
            return None;
        }
        let index = self.rng.below(self.held.len() as u64) as usize;
        let (completion, write_sector) = self.held.swap_remove(index);
        let seen = match write_sector {
            Some(sector) => Seen::CompleteWrite(sector),
            None if completion.buffer.is_empty() => Seen::CompleteFlush,
            None => return Some(completion),
        };
        self.log.borrow_mut().push(seen);
        Some(completion)
    }
}

/// A RAM disk that runs `hook` on every submission, before doing the work.
pub struct Hooked {
    pub inner: RamDisk,
    pub hook: Box<dyn FnMut(&IoRequest)>,
}

impl BlockDevice for Hooked {
    fn info(&self) -> DeviceInfo {
        self.inner.info()
    }
    fn submit(&mut self, tag: IoTag, request: IoRequest) -> Result<(), SubmitError> {
        (self.hook)(&request);
        self.inner.submit(tag, request)
    }
    fn poll_completion(&mut self) -> Option<IoCompletion> {
        self.inner.poll_completion()
    }
}

/// A RAM disk that does the work at submission but holds every completion
/// while `held` is set.
pub struct Gated {
    pub inner: RamDisk,
    pub held: Rc<Cell<bool>>,
}

impl BlockDevice for Gated {
    fn info(&self) -> DeviceInfo {
        self.inner.info()
    }
    fn submit(&mut self, tag: IoTag, request: IoRequest) -> Result<(), SubmitError> {
        self.inner.submit(tag, request)
    }
    fn poll_completion(&mut self) -> Option<IoCompletion> {
        if self.held.get() {
            return None;
        }
        self.inner.poll_completion()
    }
}

/// A RAM disk whose writes to sectors `bad` fail with a media error.
pub struct Failing {
    pub inner: RamDisk,
    pub bad: std::ops::Range<u64>,
    failed: Vec<IoTag>,
}

impl Failing {
    pub fn new(sectors: u64, bad: std::ops::Range<u64>) -> Self {
        Failing {
            inner: RamDisk::new(sectors).unwrap(),
            bad,
            failed: Vec::new(),
        }
    }
}

impl BlockDevice for Failing {
    fn info(&self) -> DeviceInfo {
        self.inner.info()
    }
    fn submit(&mut self, tag: IoTag, request: IoRequest) -> Result<(), SubmitError> {
        if let IoRequest::Write { sector, .. } = &request {
            if self.bad.contains(sector) {
                self.failed.push(tag);
            }
        }
        self.inner.submit(tag, request)
    }
    fn poll_completion(&mut self) -> Option<IoCompletion> {
        let mut completion = self.inner.poll_completion()?;
        if let Some(position) = self.failed.iter().position(|tag| *tag == completion.tag) {
            self.failed.swap_remove(position);
            completion.result = Err(IoError::Media);
        }
        Some(completion)
    }
}

/// A RAM disk that offers secure discard.
pub fn secure_ram_disk(sectors: u64) -> RamDisk {
    let mut disk = RamDisk::new(sectors).unwrap();
    disk.set_discard(true, true);
    disk
}

/// A RAM disk without discard.
pub fn plain_ram_disk(sectors: u64) -> RamDisk {
    let mut disk = RamDisk::new(sectors).unwrap();
    disk.set_discard(false, false);
    disk
}
