//! Frames waiting for a frontend's receive buffers, queued per source port
//! and served round-robin, so that one port flooding a frontend cannot
//! crowd out the others' frames.

use alloc::collections::{BTreeMap, VecDeque};
use core::time::Duration;

use crate::frame::Frame;
use crate::switch::PortId;

/// Bounds of one backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BacklogLimits {
    /// Frames one source may have waiting.
    pub frames_per_source: usize,
    /// Bytes one source may have waiting.
    pub bytes_per_source: usize,
    /// Bytes all sources together may have waiting for one queue.
    pub bytes_total: usize,
    /// Bytes all backlogs of the engine together may hold.
    pub bytes_engine: usize,
    /// How long a frame may wait for receive buffers before it is dropped
    /// (a frontend that stops posting buffers must not pin memory).
    pub timeout: Duration,
}

impl Default for BacklogLimits {
    fn default() -> Self {
        Self {
            frames_per_source: 256,
            bytes_per_source: 512 * 1024,
            bytes_total: 2 * 1024 * 1024,
            bytes_engine: 32 * 1024 * 1024,
            timeout: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Default)]
struct SourceQueue {
    /// Frames with the time they were queued.
    frames: VecDeque<(Duration, Frame)>,
    bytes: usize,
}

/// The frames waiting for one receive ring.
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    sources: BTreeMap<PortId, SourceQueue>,
    bytes: usize,
    /// The source served last; the next pop starts after it.
    cursor: Option<PortId>,
}

impl Backlog {
    /// Queues `frame` from `source`, or gives it back if that would exceed
    /// `limits`.
    pub(crate) fn push(
        &mut self,
        source: PortId,
        frame: Frame,
        now: Duration,
        limits: &BacklogLimits,
    ) -> Result<(), Frame> {
        let length = frame.data.len();
        let queue = self.sources.entry(source).or_default();
        if queue.frames.len() >= limits.frames_per_source
            || queue.bytes + length > limits.bytes_per_source
            || self.bytes + length > limits.bytes_total
        {
            if queue.frames.is_empty() {
                self.sources.remove(&source);
            }
            return Err(frame);
        }
        queue.bytes += length;
        queue.frames.push_back((now, frame));
        self.bytes += length;
        Ok(())
    }

    /// Takes the next frame, going round the sources.
    pub(crate) fn pop(&mut self) -> Option<(PortId, Duration, Frame)> {
        let source = match self.cursor {
            Some(cursor) => self
                .sources
                .range(PortId(cursor.0.saturating_add(1))..)
                .next()
                .or_else(|| self.sources.iter().next())
                .map(|(port, _)| *port)?,
            None => *self.sources.keys().next()?,
        };
        let queue = self.sources.get_mut(&source)?;
        let (queued, frame) = queue.frames.pop_front()?;
        queue.bytes -= frame.data.len();
        self.bytes -= frame.data.len();
        if queue.frames.is_empty() {
            self.sources.remove(&source);
        }
        self.cursor = Some(source);
        Some((source, queued, frame))
    }

    /// Puts back a frame just popped, at the head of its source's queue,
    /// and makes that source the next one served.
    pub(crate) fn unpop(&mut self, source: PortId, queued: Duration, frame: Frame) {
        let length = frame.data.len();
        let queue = self.sources.entry(source).or_default();
        queue.bytes += length;
        queue.frames.push_front((queued, frame));
        self.bytes += length;
        // `pop` serves the first source after the cursor.
        self.cursor = source.0.checked_sub(1).map(PortId);
    }

    /// Whether nothing waits.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Number of frames waiting.
    pub(crate) fn len(&self) -> usize {
        self.sources.values().map(|queue| queue.frames.len()).sum()
    }

    /// Bytes waiting.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Drops every frame queued before `deadline`, returning how many.
    /// Bounded by the number of frames waiting.
    pub(crate) fn expire(&mut self, deadline: Duration) -> usize {
        let mut dropped = 0;
        let mut freed = 0;
        self.sources.retain(|_, queue| {
            while let Some((queued, frame)) = queue.frames.front() {
                if *queued >= deadline {
                    break;
                }
                queue.bytes -= frame.data.len();
                freed += frame.data.len();
                dropped += 1;
                queue.frames.pop_front();
            }
            !queue.frames.is_empty()
        });
        self.bytes -= freed;
        dropped
    }

    /// Drops everything, returning how many frames were dropped.
    pub(crate) fn clear(&mut self) -> usize {
        let count = self.len();
        self.sources.clear();
        self.bytes = 0;
        self.cursor = None;
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    fn frame(tag: u8) -> Frame {
        Frame::new(vec![tag; 100])
    }

    #[test]
    fn sources_are_served_round_robin() {
        let mut backlog = Backlog::default();
        let limits = BacklogLimits::default();
        for tag in 0..5 {
            backlog
                .push(PortId(3), frame(30 + tag), Duration::ZERO, &limits)
                .unwrap();
        }
        backlog
            .push(PortId(1), frame(10), Duration::ZERO, &limits)
            .unwrap();
        backlog
            .push(PortId(1), frame(11), Duration::ZERO, &limits)
            .unwrap();
        let order: Vec<u8> = core::iter::from_fn(|| backlog.pop())
            .map(|(_, _, frame)| frame.data[0])
            .collect();
        assert_eq!(order, vec![10, 30, 11, 31, 32, 33, 34]);
        assert!(backlog.is_empty());
    }

    #[test]
    fn unpop_serves_the_same_frame_next() {
        let mut backlog = Backlog::default();
        let limits = BacklogLimits::default();
        backlog
            .push(PortId(0), frame(0), Duration::ZERO, &limits)
            .unwrap();
        backlog
            .push(PortId(2), frame(2), Duration::ZERO, &limits)
            .unwrap();
        backlog
            .push(PortId(5), frame(5), Duration::ZERO, &limits)
            .unwrap();
        for _ in 0..3 {
            let (source, queued, frame) = backlog.pop().unwrap();
            let tag = frame.data[0];
            backlog.unpop(source, queued, frame);
            let (again, _, frame) = backlog.pop().unwrap();
            assert_eq!((again, frame.data[0]), (source, tag));
        }
        assert!(backlog.is_empty());
    }

    #[test]
    fn a_flooding_source_cannot_take_the_others_room() {
        let mut backlog = Backlog::default();
        let limits = BacklogLimits {
            frames_per_source: 4,
            bytes_per_source: 10_000,
            bytes_total: 1_000,
            ..BacklogLimits::default()
        };
        let accepted = (0..100)
            .filter(|_| {
                backlog
                    .push(PortId(9), frame(9), Duration::ZERO, &limits)
                    .is_ok()
            })
            .count();
        assert_eq!(accepted, 4);
        assert!(backlog
            .push(PortId(1), frame(1), Duration::ZERO, &limits)
            .is_ok());
        assert_eq!(backlog.len(), 5);
        assert_eq!(backlog.clear(), 5);
    }

    #[test]
    fn old_frames_expire() {
        let mut backlog = Backlog::default();
        let limits = BacklogLimits::default();
        for second in 0..4 {
            let now = Duration::from_secs(second);
            backlog.push(PortId(1), frame(1), now, &limits).unwrap();
            backlog.push(PortId(2), frame(2), now, &limits).unwrap();
        }
        assert_eq!(backlog.expire(Duration::from_secs(2)), 4);
        assert_eq!(backlog.len(), 4);
        assert_eq!(backlog.bytes(), 400);
        assert_eq!(backlog.expire(Duration::from_secs(10)), 4);
        assert!(backlog.is_empty());
        assert_eq!(backlog.bytes(), 0);
    }
}
