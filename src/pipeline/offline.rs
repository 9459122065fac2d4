//! The offline driver: every frame of a capture file through the [`Step`] into a [`Tally`],
//! and on to further ends (per-packet writers, a flow meter). Used by `classify` and `flows`.

use super::Step;
use crate::classify::{Classifier, Outcome};
use crate::packet::{FiveTuple, Frame, ThreeTuple};
use crate::report::Tally;
use crate::report::model::{CaptureNotes, SourceInfo, Stopped};
use crate::report::tally::LinkTypeCount;
use crate::source::pcap::{CaptureError, CaptureReader, Format};
use std::io::Read;
use std::path::Path;

/// How often (in frames) the driver reports how far into the file it is.
pub const PROGRESS_EVERY: u64 = 4096;

/// Lends every frame of a capture to `f`, telling `progress` the byte offset reached every
/// [`PROGRESS_EVERY`] frames. A corrupt or cut capture stops the read: the error is returned
/// as a value, so the caller reports what was read before it; an error from `f` ends the read
/// at once.
///
/// When the read ends (at the end of the file or at a bad record), what the reader noticed is
/// logged as warnings on stderr ([`CaptureNotes::warnings`]: link types not decoded, a file
/// with no decodable frame, bad timestamps). They do not change the exit code: the report
/// says the same in its `capture` section.
pub fn read_frames<R: Read, E>(
    reader: &mut CaptureReader<R>,
    mut progress: impl FnMut(u64),
    mut f: impl FnMut(&Frame<'_>) -> Result<(), E>,
) -> Result<Option<CaptureError>, E> {
    loop {
        match reader.next_frame() {
            Ok(Some(frame)) => {
                f(&frame)?;
                if frame.number.is_multiple_of(PROGRESS_EVERY) {
                    progress(reader.offset());
                }
            }
            Ok(None) => {
                warn(&capture_notes(reader));
                return Ok(None);
            }
            Err(e) => {
                warn(&capture_notes(reader));
                return Ok(Some(e));
            }
        }
    }
}

/// What the reader noticed about the capture (see [`CaptureNotes`]).
pub fn capture_notes<R: Read>(reader: &CaptureReader<R>) -> CaptureNotes {
    CaptureNotes {
        link_types: reader
            .link_types()
            .iter()
            .map(|c| LinkTypeCount::new(c.link, c.frames, c.bytes))
            .collect(),
        bad_timestamps: reader.bad_timestamps(),
        first_bad_timestamp: reader.first_bad_timestamp(),
        gzip: reader.gzip(),
    }
}

/// Logs the notes' warnings.
fn warn(notes: &CaptureNotes) {
    for w in notes.warnings() {
        tracing::warn!("{w}");
    }
}

/// Every frame of a capture through `step`, counted into `tally`, then handed with its
/// [`Outcome`] to `each` (the per-packet writers; `Ok(())` when there are none). Returns the
/// error that stopped the read early, if one did (see [`read_frames`]).
pub fn classify<R, C3, C5, E>(
    reader: &mut CaptureReader<R>,
    step: &mut Step<'_, C3, C5>,
    tally: &mut Tally,
    progress: impl FnMut(u64),
    mut each: impl FnMut(&Frame<'_>, &Outcome<'_>) -> Result<(), E>,
) -> Result<Option<CaptureError>, E>
where
    R: Read,
    C3: Classifier<ThreeTuple> + ?Sized,
    C5: Classifier<FiveTuple> + ?Sized,
{
    read_frames(reader, progress, |frame| {
        let outcome = step.count(frame, tally);
        each(frame, &outcome)
    })
}

/// The report's description of a capture file.
pub fn source_info(path: &Path, format: Format) -> SourceInfo {
    SourceInfo {
        kind: match format {
            Format::Pcap => "pcap".into(),
            Format::Pcapng => "pcapng".into(),
        },
        name: path.display().to_string(),
    }
}

impl From<&CaptureError> for Stopped {
    fn from(e: &CaptureError) -> Self {
        Stopped {
            offset: e.offset(),
            message: e.to_string(),
        }
    }
}
