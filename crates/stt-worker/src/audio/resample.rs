//! Band-limited conversion of a mono stream to 16 kHz with rubato's FFT resampler, a block at a
//! time, so that memory stays bounded however long the stream is.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler};

use super::{AudioError, SAMPLE_RATE};

/// The resampler's input block (source frames); its latency is half the output block.
const CHUNK: usize = 4096;

/// One mono stream's conversion: at most one input block and one output block are held.
pub(super) struct To16k {
    pub(super) rate: u32,
    /// None when the source is already at 16 kHz.
    fft: Option<Fft<f32>>,
    pending: Vec<f32>,
    out: Vec<f32>,
    /// Output samples still to drop: the resampler's latency.
    delay: usize,
    fed: u64,
    emitted: u64,
}

impl To16k {
    pub(super) fn new(rate: u32) -> Result<Self, AudioError> {
        let fft = match rate {
            SAMPLE_RATE => None,
            _ => Some(
                Fft::new(
                    rate as usize,
                    SAMPLE_RATE as usize,
                    CHUNK,
                    1,
                    FixedSync::Both,
                )
                .map_err(|_| AudioError::Internal)?,
            ),
        };
        let out = vec![0.0; fft.as_ref().map_or(0, |f| f.output_frames_max())];
        let delay = fft.as_ref().map_or(0, |f| f.output_delay());
        let pending = Vec::with_capacity(CHUNK * 2);
        Ok(To16k {
            rate,
            fft,
            pending,
            out,
            delay,
            fed: 0,
            emitted: 0,
        })
    }

    pub(super) fn push(
        &mut self,
        mono: &[f32],
        sink: &mut dyn FnMut(&[f32]) -> bool,
    ) -> Result<(), AudioError> {
        self.fed += mono.len() as u64;
        let Some(fft) = &self.fft else {
            self.emitted += mono.len() as u64;
            return deliver(mono, sink);
        };
        let block = fft.input_frames_next();
        let mut rest = mono;
        while !rest.is_empty() {
            let take = (block - self.pending.len()).min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() == block {
                self.run(sink)?;
            }
        }
        Ok(())
    }

    /// Flushes the last partial block and the resampler's latency.
    pub(super) fn finish(
        &mut self,
        sink: &mut dyn FnMut(&[f32]) -> bool,
    ) -> Result<(), AudioError> {
        // One partial block, then at most two blocks of silence cover the latency.
        for _ in 0..4 {
            if self.fft.is_none() || self.emitted >= self.expected() {
                break;
            }
            self.run(sink)?;
        }
        Ok(())
    }

    /// The output length the input so far makes.
    fn expected(&self) -> u64 {
        (self.fed * u64::from(SAMPLE_RATE)).div_ceil(u64::from(self.rate))
    }

    /// Resamples the pending input (a full block, or the zero-padded last one).
    fn run(&mut self, sink: &mut dyn FnMut(&[f32]) -> bool) -> Result<(), AudioError> {
        let expected = self.expected();
        let Some(fft) = &mut self.fft else {
            return Ok(());
        };
        let frames = self.pending.len();
        let input = InterleavedSlice::new(&self.pending[..], 1, frames);
        let capacity = self.out.len();
        let output = InterleavedSlice::new_mut(&mut self.out[..], 1, capacity);
        let (Ok(input), Ok(mut output)) = (input, output) else {
            return Err(AudioError::Internal);
        };
        let indexing = Indexing::new().partial_len(frames);
        let (_, produced) = fft
            .process_into_buffer(&input, &mut output, Some(&indexing))
            .map_err(|_| AudioError::Internal)?;
        self.pending.clear();
        let skip = self.delay.min(produced);
        self.delay -= skip;
        let room = usize::try_from(expected - self.emitted).unwrap_or(usize::MAX);
        let ready = &self.out[skip..produced.min(skip.saturating_add(room))];
        self.emitted += ready.len() as u64;
        deliver(ready, sink)
    }
}

fn deliver(samples: &[f32], sink: &mut dyn FnMut(&[f32]) -> bool) -> Result<(), AudioError> {
    if samples.is_empty() || sink(samples) {
        Ok(())
    } else {
        Err(AudioError::Cancelled)
    }
}
