//! The worker's end of the wire: commands read from stdin on a thread of their own,
//! events written to stdout one whole line at a time.

use std::io::{BufRead, Write};
use std::sync::mpsc;

use crate::{Command, Event};

/// A thread that reads commands from stdin and forwards them, logging malformed lines
/// to stderr, and sends [`Command::Shutdown`] when stdin closes (the daemon is gone).
pub fn read_commands() -> std::io::Result<mpsc::Receiver<Command>> {
    let (tx, rx) = mpsc::channel::<Command>();
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Command>(&line) {
                    Ok(command) => {
                        if tx.send(command).is_err() {
                            break;
                        }
                    }
                    Err(e) => eprintln!("worker: ignoring a malformed command: {e}"),
                }
            }
            let _ = tx.send(Command::Shutdown);
        })?;
    Ok(rx)
}

/// Writes one event line to stdout. Any thread may emit: each line is written whole
/// under stdout's lock.
pub fn emit(event: &Event) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(event)?;
    line.push(b'\n');
    let mut out = std::io::stdout().lock();
    out.write_all(&line)?;
    out.flush()
}
