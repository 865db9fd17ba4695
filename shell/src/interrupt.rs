//! Ctrl-C in the shell: one SIGINT listener for the shell's whole life.
//!
//! The listener is installed before the first statement runs, so from then on SIGINT never ends
//! the process: it only counts. A statement notes the count when it starts ([`Interrupts::arm`])
//! and is interrupted once the count moves past it, so a Ctrl-C that arrives while the shell is
//! busy (rendering a batch, planning) is never lost, and one pressed before the statement
//! started never cancels it. While the line editor reads, the terminal is in raw mode and
//! Ctrl-C is a key the editor handles (it clears the line), not a signal. The editor sets its
//! own SIGINT handler when it is created, so the shell installs this listener after creating
//! it; the listener's handler then passes each signal on to the editor's too.

use tokio::sync::watch;

/// The shell's Ctrl-C counter.
pub struct Interrupts {
    count: watch::Receiver<u64>,
    /// The count when the current statement started.
    armed_at: u64,
}

impl Interrupts {
    /// Start listening for SIGINT (Ctrl-C) for the rest of the process's life.
    pub fn install() -> std::io::Result<Self> {
        let (tx, count) = watch::channel(0u64);
        spawn_listener(tx)?;
        Ok(Self { count, armed_at: 0 })
    }

    /// A statement starts: Ctrl-C pressed before now does not interrupt it.
    pub fn arm(&mut self) {
        self.armed_at = *self.count.borrow();
    }

    /// Whether Ctrl-C was pressed since [`Interrupts::arm`].
    pub fn fired(&self) -> bool {
        *self.count.borrow() != self.armed_at
    }

    /// Wait until Ctrl-C is pressed (or was, since [`Interrupts::arm`]). Cancel-safe: dropping
    /// the future loses nothing, as the count keeps every press.
    pub async fn pressed(&mut self) {
        let armed_at = self.armed_at;
        if self.count.wait_for(|n| *n != armed_at).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(unix)]
fn spawn_listener(tx: watch::Sender<u64>) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut sigint = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        while sigint.recv().await.is_some() {
            tx.send_modify(|n| *n += 1);
        }
    });
    Ok(())
}

#[cfg(not(unix))]
fn spawn_listener(tx: watch::Sender<u64>) -> std::io::Result<()> {
    let mut ctrl_c = tokio::signal::windows::ctrl_c()?;
    tokio::spawn(async move {
        while ctrl_c.recv().await.is_some() {
            tx.send_modify(|n| *n += 1);
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_press_while_nobody_waits_is_kept_and_an_earlier_one_is_forgotten() {
        let (tx, count) = watch::channel(0u64);
        let mut i = Interrupts { count, armed_at: 0 };
        tx.send_modify(|n| *n += 1); // pressed before the statement started
        i.arm();
        assert!(!i.fired());
        tx.send_modify(|n| *n += 1); // pressed while the shell was busy
        assert!(i.fired());
        tokio::time::timeout(std::time::Duration::from_secs(5), i.pressed())
            .await
            .expect("the press was kept");
        i.arm();
        assert!(!i.fired());
    }
}
