//! What passes between the two stages, and the channels it passes on.
//!
//! Batches go forward on a small bounded tokio channel: when it stays full,
//! the source pauses fetching. Everything the sink has to tell the source
//! comes back on one unbounded channel, in the order it happened, and only
//! the source thread acts on it: it alone owns the offsets' [`Tracker`] and
//! the consumer, so no lock is shared between the stages and none is held
//! across a transform call or a seek (the way Vector's acknowledgements flow
//! back to its Kafka source).
//!
//! [`Tracker`]: crate::offsets::Tracker

use std::sync::mpsc as std_mpsc;

use tokio::sync::mpsc;

use crate::batch::Batch;
use crate::durability::Holds;

/// The sink stage's word to the source thread.
pub(crate) enum Ack {
    /// The work these holds kept back is finished: stored durably, or
    /// refused for good and dealt with (dead-lettered, counted). Its
    /// offsets may be committed.
    Release(Holds),
    /// The store restarted while accepted batches waited to be durable:
    /// read every partition again from its commit position.
    Rewind,
    /// A delivered batch, emptied, for the source to fill again (its
    /// buffers keep their capacity).
    Reuse(Box<Batch>),
}

/// The source thread's ends.
pub(crate) struct SourceEnds {
    pub(super) batches: mpsc::Sender<Batch>,
    pub(super) acks: std_mpsc::Receiver<Ack>,
}

/// The sink stage's ends.
pub(crate) struct SinkEnds {
    pub(super) batches: mpsc::Receiver<Batch>,
    pub(super) acks: std_mpsc::Sender<Ack>,
}

/// Both ends of both channels; `queued`: batches built and not yet taken
/// by the sink, beyond those it is sending.
pub(crate) fn channels(queued: usize) -> (SourceEnds, SinkEnds) {
    let (batches_tx, batches_rx) = mpsc::channel(queued);
    let (acks_tx, acks_rx) = std_mpsc::channel();
    (
        SourceEnds {
            batches: batches_tx,
            acks: acks_rx,
        },
        SinkEnds {
            batches: batches_rx,
            acks: acks_tx,
        },
    )
}
