//! One source's window, worked through oldest slice first (docs/collection.md, "Slices").
//!
//! The first page of a slice either is its last page (the slice is done), or it narrows the
//! slice: its events newer than the page's oldest second are held as a finished *ready*
//! slice and only the older rest is queried again (`hold_split`); when the hold is full the
//! slice is split in two, older half first, down to the minimum slice, and a slice that short
//! is paged to the end. Slices are stored in time order, and only then do the checkpoint and
//! the item's cursor move to a slice's end.

use chrono::{DateTime, Duration, Utc};
use iamtrail_core::contract::{Counts, Mode, SourceProgress};
use iamtrail_core::source::checkpoint_key;
use iamtrail_core::window::{advance_checkpoint, backfill_window, incremental_window, Window};
use iamtrail_core::Source;

use super::{Invocation, Stop};
use crate::ports::{
    AlertStore, ControlStore, EventSource, EventStore, LookupPage, LookupRequest, ObjectStore,
};

/// Most events held in memory as ready slices while older ones are read (a few MB).
const MAX_HELD_EVENTS: usize = 1000;
/// A long leaf slice is written every this many pages, so its memory stays bounded.
const PAGES_PER_WRITE: usize = 20;

/// Work of the slicing loop.
enum Task {
    /// A range to read from CloudTrail.
    Query(Window),
    /// A range already read (the events of a first page), stored once everything older is.
    Ready(Window, LookupPage),
}

/// The slicing loop's state for one source in one invocation.
struct Slicer {
    /// Oldest first: the task on top is older than everything below it.
    stack: Vec<Task>,
    /// Events held in ready slices.
    held: usize,
    /// Most events that may be held (none after a stall).
    hold_cap: usize,
    /// Slices with more than one page are split down to this length.
    min_slice: Duration,
    /// Whether an out-of-order page was already logged.
    warned_unordered: bool,
}

/// What happened to a source after a stored slice.
enum AfterSlice {
    Continue,
    /// An operator paused the source while it was being read.
    Paused,
}

impl<S, E, C, A, O> Invocation<'_, S, E, C, A, O>
where
    S: EventSource,
    E: EventStore,
    C: ControlStore,
    A: AlertStore,
    O: ObjectStore,
{
    /// Reads one source from where the item's cursor left it to the end of its window.
    pub(super) async fn collect_source(
        &self,
        source: Source,
        progress: &mut SourceProgress,
        now: DateTime<Utc>,
    ) -> Result<(), Stop> {
        let key = checkpoint_key(&self.region, source);
        let state = self.deps.control.source_state(&key).await?;
        if state.is_paused() {
            progress.skipped = Some("paused in the control table".into());
            return Ok(());
        }
        progress.checkpoint = state.checkpoint;
        let window = match progress.window {
            Some(window) => window,
            None => {
                let window = self.fix_window(source, state.checkpoint, progress, now)?;
                progress.window = Some(window);
                window
            }
        };
        let resume = match progress.cursor {
            Some(cursor) => cursor + Duration::seconds(1),
            None => window.start,
        };
        let todo = Window::new(resume, window.end);
        if todo.is_empty() {
            return Ok(());
        }
        // After stalled invocations, split further than the configured minimum (down to 1 s),
        // and hold nothing back, so that every finished slice is stored at once.
        let mut slicer = Slicer {
            stack: vec![Task::Query(todo)],
            held: 0,
            hold_cap: if progress.stalls == 0 {
                MAX_HELD_EVENTS
            } else {
                0
            },
            min_slice: (self.deps.settings.min_slice / 2i32.pow(progress.stalls.min(20)))
                .max(Duration::seconds(1)),
            warned_unordered: false,
        };
        while let Some(task) = slicer.stack.pop() {
            let (slice, pages, counts) = match task {
                Task::Ready(slice, page) => {
                    slicer.held -= page.events.len();
                    (slice, vec![page], Counts::default())
                }
                Task::Query(slice) => match self.query(source, slice, &mut slicer, progress).await?
                {
                    Some((pages, counts)) => (slice, pages, counts),
                    None => continue,
                },
            };
            match self
                .finish_slice(source, &key, slice, pages, counts, progress)
                .await?
            {
                AfterSlice::Continue => {}
                AfterSlice::Paused => {
                    progress.skipped = Some("paused in the control table during the run".into());
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// The source's window, fixed at the item's first invocation; a warning when CloudTrail's
    /// history no longer reaches back to the checkpoint.
    fn fix_window(
        &self,
        source: Source,
        checkpoint: Option<DateTime<Utc>>,
        progress: &mut SourceProgress,
        now: DateTime<Utc>,
    ) -> Result<Window, Stop> {
        match self.mode {
            Mode::Incremental => {
                let (window, warning) = incremental_window(checkpoint, now, self.deps.settings);
                if let Some(warning) = warning {
                    tracing::warn!(region = %self.region, %source, %warning, "checkpoint clipped");
                    progress.warnings.push(warning);
                }
                Ok(window)
            }
            Mode::Backfill => {
                let (Some(start), Some(end)) = self.backfill else {
                    return Err(Stop::Failed("a backfill item needs start and end".into()));
                };
                Ok(backfill_window(start, end, now, self.deps.settings)
                    .map_err(Stop::Failed)?
                    .0)
            }
            Mode::Export => Err(Stop::Failed(
                "an export-only run has no Collect items".into(),
            )),
        }
    }

    /// Reads a slice's first page. Either narrows the slice (pushing the narrower tasks,
    /// `None`), or reads the slice to its last page and returns the pages not yet stored with
    /// the counts of the pages already stored.
    async fn query(
        &self,
        source: Source,
        slice: Window,
        slicer: &mut Slicer,
        progress: &mut SourceProgress,
    ) -> Result<Option<(Vec<LookupPage>, Counts)>, Stop> {
        let request = LookupRequest {
            region: self.region.clone(),
            source,
            start: slice.start,
            end: slice.end,
            next_token: None,
        };
        let first = self.lookup(&request, &mut progress.counts).await?;
        if first.next_token.is_some() {
            // Every event strictly newer than the page's oldest second is in the page (when
            // the page is newest first): hold them as a ready slice, query only the older rest.
            match hold_split(&slice, &first) {
                Ok(Some((older, newer, page)))
                    if slicer.held + page.events.len() <= slicer.hold_cap =>
                {
                    slicer.held += page.events.len();
                    slicer.stack.push(Task::Ready(newer, page));
                    slicer.stack.push(Task::Query(older));
                    return Ok(None);
                }
                Err(Unordered) if !slicer.warned_unordered => {
                    slicer.warned_unordered = true;
                    tracing::warn!(region = %self.region, %source, "a LookupEvents page was not newest first; not holding its events");
                }
                _ => {}
            }
            if slice.duration() > slicer.min_slice {
                if let Some((older, newer)) = slice.split() {
                    slicer.stack.push(Task::Query(newer));
                    slicer.stack.push(Task::Query(older));
                    return Ok(None);
                }
            }
        }
        // A leaf slice: read every page, writing every PAGES_PER_WRITE pages. Out of time
        // mid-slice, nothing of it counts yet: it is read again next time (its stored pages
        // are rewritten identically).
        let mut counts = Counts::default();
        let mut pages = vec![first];
        while let Some(token) = pages.last_mut().and_then(|p| p.next_token.take()) {
            let next = LookupRequest {
                next_token: Some(token),
                ..request.clone()
            };
            let page = self.lookup(&next, &mut progress.counts).await?;
            if pages.len() >= PAGES_PER_WRITE {
                counts.add(&self.store_within_budget(&pages, source).await?);
                pages.clear();
            }
            pages.push(page);
        }
        Ok(Some((pages, counts)))
    }

    /// Stores a slice's remaining pages, moves the checkpoint and the cursor to its end, and
    /// renews the region's lease. The writes are bounded by the time left: cut off, nothing
    /// moved, and the slice is read and written again next invocation.
    async fn finish_slice(
        &self,
        source: Source,
        key: &str,
        slice: Window,
        pages: Vec<LookupPage>,
        mut counts: Counts,
        progress: &mut SourceProgress,
    ) -> Result<AfterSlice, Stop> {
        let checkpoint = advance_checkpoint(self.mode, progress.checkpoint, &slice);
        let write = async {
            let stored = self.store_pages(&pages, source).await?;
            let state = self
                .deps
                .control
                .record_slice(
                    key,
                    checkpoint,
                    counts.stored + stored.stored,
                    self.budget.now(),
                )
                .await?;
            Ok::<_, Stop>((stored, state))
        };
        let (stored, state) = tokio::time::timeout(self.budget.remaining(), write)
            .await
            .map_err(|_| Stop::OutOfTime)??;
        counts.add(&stored);
        counts.slices = 1;
        progress.counts.add(&counts);
        if let Some(cp) = checkpoint {
            progress.checkpoint = Some(cp);
        }
        progress.cursor = Some(slice.end);
        if state.is_paused() {
            tracing::warn!(region = %self.region, %source, "paused in the control table during the run; stopping");
            return Ok(AfterSlice::Paused);
        }
        self.lease.renew(self.deps.control, &self.budget).await?;
        Ok(AfterSlice::Continue)
    }

    /// Stores pages in the middle of a long slice, bounded by the time left.
    async fn store_within_budget(
        &self,
        pages: &[LookupPage],
        source: Source,
    ) -> Result<Counts, Stop> {
        tokio::time::timeout(self.budget.remaining(), self.store_pages(pages, source))
            .await
            .map_err(|_| Stop::OutOfTime)?
    }
}

/// A page that was not newest first (or had an event without a time): holding its events
/// could skip events it does not hold.
#[derive(Debug, PartialEq)]
struct Unordered;

/// Splits a slice at the oldest second of its first page `page` (newest first): the newer part
/// `(oldest, end]` holds exactly the page's events newer than that second; the older part
/// `[start, oldest]` still has to be read (it includes the oldest second, which may continue on
/// the next page). `Ok(None)` when the page does not narrow the slice; `Err(Unordered)` when
/// the page is not newest first, so that it cannot be trusted to hold every newer event.
fn hold_split(
    slice: &Window,
    page: &LookupPage,
) -> Result<Option<(Window, Window, LookupPage)>, Unordered> {
    let times: Option<Vec<DateTime<Utc>>> = page.events.iter().map(|e| e.event_time).collect();
    let times = times.ok_or(Unordered)?;
    if times.windows(2).any(|pair| pair[1] > pair[0]) {
        return Err(Unordered);
    }
    let Some(&oldest) = times.last() else {
        return Ok(None);
    };
    if oldest <= slice.start || oldest >= slice.end {
        return Ok(None);
    }
    let newer = Window::new(oldest + Duration::seconds(1), slice.end);
    let older = Window::new(slice.start, oldest);
    let events = page
        .events
        .iter()
        .filter(|e| e.event_time.is_some_and(|t| t > oldest))
        .cloned()
        .collect();
    Ok(Some((
        older,
        newer,
        LookupPage {
            events,
            next_token: None,
        },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::LookupEvent;
    use chrono::TimeZone;

    fn at(s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 3, 1, 10, 0, s).unwrap()
    }

    fn page(times: &[Option<u32>]) -> LookupPage {
        LookupPage {
            events: times
                .iter()
                .map(|t| LookupEvent {
                    event_time: t.map(at),
                    ..Default::default()
                })
                .collect(),
            next_token: Some("1".into()),
        }
    }

    #[test]
    fn a_newest_first_page_is_held_above_its_oldest_second() {
        let slice = Window::new(at(0), at(59));
        let (older, newer, held) =
            hold_split(&slice, &page(&[Some(50), Some(40), Some(30), Some(30)]))
                .unwrap()
                .unwrap();
        assert_eq!((older.start, older.end), (at(0), at(30)));
        assert_eq!((newer.start, newer.end), (at(31), at(59)));
        assert_eq!(held.events.len(), 2);
        // A page that does not narrow the slice.
        assert_eq!(
            hold_split(&slice, &page(&[Some(9), Some(0)])).unwrap(),
            None
        );
    }

    #[test]
    fn an_unordered_page_or_one_without_times_is_never_held() {
        let slice = Window::new(at(0), at(59));
        assert_eq!(
            hold_split(&slice, &page(&[Some(30), Some(40)])),
            Err(Unordered)
        );
        assert_eq!(
            hold_split(&slice, &page(&[Some(40), None, Some(30)])),
            Err(Unordered)
        );
    }
}
