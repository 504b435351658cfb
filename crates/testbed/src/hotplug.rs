//! The ENI hot-plug watcher: on EC2 a newly attached ENI shows up in the instance as a new link with the
//! ENI's MAC, and disappears when it is detached. This thread makes the simulator's attachments do the
//! same to the node namespace: `eth<device index>` with the ENI's MAC, its veth peer (up) in the companion
//! namespace. The link itself is left down and unaddressed, as the kernel leaves it: ipamd configures it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crate::netns::ip;
use crate::sim_state::{SimState, now_ms};

const POLL: Duration = Duration::from_millis(50);

/// A running watcher; stops when dropped.
#[derive(Debug)]
pub(crate) struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    plugged: Arc<Mutex<BTreeMap<u32, String>>>,
    errors: Arc<Mutex<Vec<String>>>,
}

struct Context {
    state_file: PathBuf,
    instance_id: String,
    node_netns: String,
    companion_netns: String,
}

impl Watcher {
    pub(crate) fn start(
        state_file: PathBuf,
        instance_id: String,
        node_netns: String,
        companion_netns: String,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let plugged = Arc::new(Mutex::new(BTreeMap::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let context = Context {
            state_file,
            instance_id,
            node_netns,
            companion_netns,
        };
        let thread = {
            let (stop, plugged, errors) = (stop.clone(), plugged.clone(), errors.clone());
            std::thread::Builder::new()
                .name("eni-hotplug".into())
                .spawn(move || watch(&context, &stop, &plugged, &errors))
                .ok()
        };
        Self {
            stop,
            thread,
            plugged,
            errors,
        }
    }

    /// Device index → MAC of the links plugged so far.
    pub(crate) fn plugged(&self) -> BTreeMap<u32, String> {
        self.plugged.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// Links that could not be plugged or removed.
    pub(crate) fn errors(&self) -> Vec<String> {
        self.errors.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn watch(
    context: &Context,
    stop: &AtomicBool,
    plugged: &Mutex<BTreeMap<u32, String>>,
    errors: &Mutex<Vec<String>>,
) {
    let mut last_seen: Option<SystemTime> = None;
    let mut pending_attachment = false;
    while !stop.load(Ordering::Relaxed) {
        let modified = std::fs::metadata(&context.state_file)
            .and_then(|m| m.modified())
            .ok();
        // Re-read when the file changed, or while an attachment is still completing (nothing gets written
        // when its delay elapses).
        if modified.is_some() && (modified != last_seen || pending_attachment) {
            last_seen = modified;
            if let Ok(state) = SimState::read(&context.state_file) {
                let now = now_ms();
                pending_attachment = state.enis.values().any(|e| {
                    e.attachment
                        .as_ref()
                        .is_some_and(|a| a.instance_id == context.instance_id && a.attached_ms > now)
                });
                let wanted: BTreeMap<u32, String> = state
                    .attached_enis(&context.instance_id, now)
                    .into_iter()
                    .filter(|(index, eni)| {
                        *index > 0 && eni.attachment.as_ref().is_some_and(|a| a.network_card == 0)
                    })
                    .map(|(index, eni)| (index, eni.mac.to_ascii_lowercase()))
                    .collect();
                if let Ok(mut plugged) = plugged.lock() {
                    // A link that could not be plugged is retried on the next round.
                    pending_attachment |= !reconcile(context, &wanted, &mut plugged, errors);
                }
            }
        }
        std::thread::sleep(POLL);
    }
}

fn reconcile(
    context: &Context,
    wanted: &BTreeMap<u32, String>,
    plugged: &mut BTreeMap<u32, String>,
    errors: &Mutex<Vec<String>>,
) -> bool {
    let stale: Vec<u32> = plugged
        .iter()
        .filter(|(index, mac)| wanted.get(index) != Some(mac))
        .map(|(index, _)| *index)
        .collect();
    for index in stale {
        // Deleting the node end removes the pair.
        let _ = ip(&context.node_netns, &["link", "del", &format!("eth{index}")]);
        plugged.remove(&index);
    }
    for (index, mac) in wanted {
        if plugged.contains_key(index) {
            continue;
        }
        let peer = format!("u{index}");
        let name = format!("eth{index}");
        let result = ip(
            &context.companion_netns,
            &[
                "link",
                "add",
                &peer,
                "type",
                "veth",
                "peer",
                "name",
                &name,
                "address",
                mac,
                "netns",
                &context.node_netns,
            ],
        )
        .and_then(|_| ip(&context.companion_netns, &["link", "set", &peer, "up"]));
        match result {
            Ok(_) => {
                plugged.insert(*index, mac.clone());
            }
            Err(error) => {
                let _ = ip(&context.companion_netns, &["link", "del", &peer]);
                let message = format!("plugging {name} ({mac}): {error}");
                if let Ok(mut errors) = errors.lock()
                    && !errors.contains(&message)
                {
                    errors.push(message);
                }
            }
        }
    }
    wanted.keys().all(|index| plugged.contains_key(index))
}
