//! A streaming linear-interpolation resampler for interleaved `f32` audio.
//!
//! Linear interpolation is cheap and has no latency, but it does not low-pass filter, so
//! downsampling content above the new Nyquist frequency aliases. That is acceptable for the
//! WAV test source (speech/music at 44.1 kHz → 48 kHz is an *up*sample, where linear
//! interpolation only slightly dulls the top octave); a real origin should feed 48 kHz.

/// Converts a stream from `in_rate` to `out_rate` by linear interpolation. State carries
/// across calls, so feeding a stream in chunks (or looping a file) gives a continuous output.
#[derive(Clone, Debug)]
pub struct LinearResampler {
    channels: usize,
    /// Input frames advanced per output frame (`in_rate / out_rate`).
    step: f64,
    /// Position of the next output frame, in input frames after `prev`.
    pos: f64,
    /// The previous input frame (one sample per channel), once one has been seen.
    prev: Option<Vec<f32>>,
}

impl LinearResampler {
    /// A resampler for `channels` interleaved channels. Rates must be non-zero.
    pub fn new(in_rate: u32, out_rate: u32, channels: usize) -> Self {
        LinearResampler {
            channels: channels.max(1),
            step: f64::from(in_rate.max(1)) / f64::from(out_rate.max(1)),
            pos: 0.0,
            prev: None,
        }
    }

    /// Resamples `input` (interleaved, a whole number of frames; a trailing partial frame is
    /// ignored) and appends the output to `out`.
    pub fn process(&mut self, input: &[f32], out: &mut Vec<f32>) {
        let ch = self.channels;
        for cur in input.chunks_exact(ch) {
            let Some(prev) = self.prev.as_mut() else {
                self.prev = Some(cur.to_vec());
                continue;
            };
            while self.pos < 1.0 {
                let t = self.pos as f32;
                out.extend(prev.iter().zip(cur).map(|(a, b)| a + (b - a) * t));
                self.pos += self.step;
            }
            self.pos -= 1.0;
            prev.copy_from_slice(cur);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_rate_passes_through_with_one_frame_delay() {
        let mut r = LinearResampler::new(48_000, 48_000, 2);
        let input: Vec<f32> = (0..20).map(|i| i as f32).collect();
        let mut out = Vec::new();
        r.process(&input, &mut out);
        assert_eq!(out, input[..18].to_vec());
    }

    #[test]
    fn upsample_count_and_interpolation() {
        let mut r = LinearResampler::new(44_100, 48_000, 1);
        let input: Vec<f32> = (0..44_100).map(|i| i as f32).collect();
        let mut out = Vec::new();
        // Feed in uneven chunks: the result must not depend on chunking.
        for chunk in input.chunks(1000) {
            r.process(chunk, &mut out);
        }
        assert!((out.len() as i64 - 48_000).abs() <= 2, "{}", out.len());
        // A ramp stays a ramp with slope 44100/48000.
        for (k, v) in out.iter().enumerate().take(1000) {
            let expect = k as f32 * 44_100.0 / 48_000.0;
            assert!((v - expect).abs() < 1e-2, "{k}: {v} vs {expect}");
        }
    }

    #[test]
    fn downsample_count() {
        let mut r = LinearResampler::new(96_000, 48_000, 2);
        let input = vec![0.5f32; 96_000 * 2];
        let mut out = Vec::new();
        r.process(&input, &mut out);
        assert!((out.len() as i64 / 2 - 48_000).abs() <= 2);
        assert!(out.iter().all(|v| (*v - 0.5).abs() < 1e-6));
    }
}
