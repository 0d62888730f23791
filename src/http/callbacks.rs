//! Callbacks stored in groups. In a boot storm thousands of installers call
//! back at once; SQLite's one writer stores a group of them in about the
//! time it stores one (one turn at the writer, one commit), so the handlers
//! hand their callbacks to one task that stores whatever is waiting
//! together and answers each. Nothing is answered before it is stored.
//! While callbacks of different deployments keep coming, the task waits
//! a little for more before it stores a small group
//! (`bootloader_store::Linger`): at a light storm's pace that makes one
//! writer's turn of several callbacks instead of one each, for 20 ms more
//! before the answer.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use bootloader_store::Linger;
use bootloader_store::boot::{BootStore, CallbackCall, CallbackReceipt};

/// The most callbacks stored in one transaction.
const GROUP: usize = 256;
/// Callbacks waiting for the writer; past this, handlers wait to queue.
const QUEUE: usize = 4096;

type Answer = oneshot::Sender<Result<CallbackReceipt, String>>;

#[derive(Clone)]
pub struct CallbackWriter {
    tx: mpsc::Sender<(CallbackCall, Answer)>,
}

impl CallbackWriter {
    /// Starts the writer task; `max` is the callbacks a deployment may hold.
    pub fn spawn(store: Arc<dyn BootStore>, max: u32) -> Self {
        let (tx, mut rx) = mpsc::channel::<(CallbackCall, Answer)>(QUEUE);
        tokio::spawn(async move {
            let mut group = Vec::with_capacity(GROUP);
            let mut linger = Linger::default();
            while rx.recv_many(&mut group, GROUP).await > 0 {
                let first = group.first().map(|(call, _)| call.token.clone());
                let wait = first.and_then(|caller| {
                    linger.wait(tokio::time::Instant::now(), group.len(), &caller)
                });
                if let Some(wait) = wait {
                    tokio::time::sleep(wait).await;
                    while group.len() < GROUP
                        && let Ok(more) = rx.try_recv()
                    {
                        group.push(more);
                    }
                }
                if let Some((last, _)) = group.last() {
                    linger.took(tokio::time::Instant::now(), group.len(), last.token.clone());
                }
                let (calls, answers): (Vec<CallbackCall>, Vec<Answer>) = group.drain(..).unzip();
                let started = std::time::Instant::now();
                let stored = store.record_callbacks(&calls, max).await;
                crate::telemetry::store_op("callback_group", started.elapsed());
                match stored {
                    Ok(receipts) => {
                        for (answer, receipt) in answers.into_iter().zip(receipts) {
                            let _ = answer.send(Ok(receipt));
                        }
                    }
                    Err(e) => {
                        let why = e.to_string();
                        for answer in answers {
                            let _ = answer.send(Err(why.clone()));
                        }
                    }
                }
            }
        });
        Self { tx }
    }

    /// Stores `call` with the others waiting; `Err` says why it was not
    /// (the machine should retry).
    pub async fn record(&self, call: CallbackCall) -> Result<CallbackReceipt, String> {
        let (answer, answered) = oneshot::channel();
        self.tx
            .send((call, answer))
            .await
            .map_err(|_| "the callback writer has stopped".to_string())?;
        answered
            .await
            .map_err(|_| "the callback writer has stopped".to_string())?
    }
}
