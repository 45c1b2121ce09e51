//! In-memory [`BundleStore`](crate::ports::BundleStore).

use super::*;

#[derive(Debug, Default)]
struct BundleDb {
    live: HashMap<TaskId, (Vec<u8>, u64)>,
    archives: HashMap<(TaskId, String), Vec<u8>>,
    next_version: u64,
}

/// In-memory [`BundleStore`]. Versions are ETag-like (`"v7"`), unique across the store.
#[derive(Debug, Clone, Default)]
pub struct MemoryBundleStore {
    db: Arc<Mutex<BundleDb>>,
    faults: Faults,
    log: CallLog,
}

impl MemoryBundleStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
    common_accessors!();

    /// Stores (or replaces) a bundle, as FlowEngine (or a concurrent writer) would.
    pub fn put(&self, id: &TaskId, bytes: Vec<u8>) -> BundleVersion {
        let mut db = lock(&self.db);
        db.next_version += 1;
        let v = db.next_version;
        db.live.insert(id.clone(), (bytes, v));
        version(v)
    }

    /// The live bundle's bytes.
    pub fn bytes(&self, id: &TaskId) -> Option<Vec<u8>> {
        lock(&self.db).live.get(id).map(|(b, _)| b.clone())
    }

    /// The ids of every live bundle.
    pub fn ids(&self) -> Vec<TaskId> {
        lock(&self.db).live.keys().cloned().collect()
    }

    /// Every archive of a task: (checksum, bytes).
    pub fn archives(&self, id: &TaskId) -> Vec<(String, Vec<u8>)> {
        lock(&self.db)
            .archives
            .iter()
            .filter(|((t, _), _)| t == id)
            .map(|((_, c), b)| (c.clone(), b.clone()))
            .collect()
    }
}

pub(super) fn version(v: u64) -> BundleVersion {
    BundleVersion(format!("\"v{v}\""))
}

#[async_trait]
impl BundleStore for MemoryBundleStore {
    async fn head(&self, id: &TaskId) -> Result<BundleMeta> {
        let t = enter(&self.log, &self.faults, "bundle.head", false, || {
            id.to_string()
        })
        .await?;
        let r = lock(&self.db)
            .live
            .get(id)
            .map(|(b, v)| BundleMeta::new(b.len() as u64, version(*v)))
            .ok_or_else(|| not_found("bundle.head", format!("bundle {id}")))?;
        t.finish("bundle.head", r)
    }

    async fn get(&self, id: &TaskId, max_bytes: u64) -> Result<Bundle> {
        let t = enter(&self.log, &self.faults, "bundle.get", false, || {
            id.to_string()
        })
        .await?;
        let r = {
            let db = lock(&self.db);
            let (b, v) = db
                .live
                .get(id)
                .ok_or_else(|| not_found("bundle.get", format!("bundle {id}")))?;
            if b.len() as u64 > max_bytes {
                return Err(Error::new(
                    ErrorKind::TooLarge,
                    format!(
                        "bundle {id} is {} bytes, over the {max_bytes}-byte limit",
                        b.len()
                    ),
                )
                .with_operation("bundle.get")
                .with_backend(BACKEND));
            }
            Bundle::new(b.clone(), version(*v))
        };
        t.finish("bundle.get", r)
    }

    async fn put_archive(&self, id: &TaskId, checksum: &str, bytes: &[u8]) -> Result<()> {
        let t = enter(&self.log, &self.faults, "bundle.put_archive", true, || {
            format!("{id} {checksum}")
        })
        .await?;
        {
            let mut db = lock(&self.db);
            let k = (id.clone(), checksum.to_owned());
            if db.archives.contains_key(&k) {
                return Err(Error::new(
                    ErrorKind::AlreadyExists,
                    format!("archive {checksum} of {id} already exists"),
                )
                .with_operation("bundle.put_archive")
                .with_backend(BACKEND));
            }
            db.archives.insert(k, bytes.to_vec());
        }
        t.finish("bundle.put_archive", ())
    }

    async fn get_archive(&self, id: &TaskId, checksum: &str, max_bytes: u64) -> Result<Vec<u8>> {
        let t = enter(&self.log, &self.faults, "bundle.get_archive", false, || {
            format!("{id} {checksum}")
        })
        .await?;
        let r = {
            let db = lock(&self.db);
            let b = db
                .archives
                .get(&(id.clone(), checksum.to_owned()))
                .ok_or_else(|| {
                    not_found("bundle.get_archive", format!("archive {checksum} of {id}"))
                })?;
            if b.len() as u64 > max_bytes {
                return Err(Error::new(ErrorKind::TooLarge, "archive over the limit")
                    .with_operation("bundle.get_archive")
                    .with_backend(BACKEND));
            }
            b.clone()
        };
        t.finish("bundle.get_archive", r)
    }

    async fn put_if_version(
        &self,
        id: &TaskId,
        bytes: &[u8],
        expected: &BundleVersion,
    ) -> Result<BundleVersion> {
        let t = enter(
            &self.log,
            &self.faults,
            "bundle.put_if_version",
            true,
            || format!("{id} if {} ({} bytes)", expected.0, bytes.len()),
        )
        .await?;
        let v = {
            let mut db = lock(&self.db);
            let current = db
                .live
                .get(id)
                .map(|(_, v)| version(*v))
                .ok_or_else(|| not_found("bundle.put_if_version", format!("bundle {id}")))?;
            if &current != expected {
                return Err(Error::conflict(format!(
                    "bundle {id} is at {}, not {}",
                    current.0, expected.0
                ))
                .with_operation("bundle.put_if_version")
                .with_backend(BACKEND));
            }
            db.next_version += 1;
            let v = db.next_version;
            db.live.insert(id.clone(), (bytes.to_vec(), v));
            version(v)
        };
        t.finish("bundle.put_if_version", v)
    }
}

/// Builds a valid FlowEngine-style context bundle of exactly `size` bytes (at least 256), for
/// replays and tests: a task, a system prompt, a conversation history and file contents.
pub fn synthesize_bundle(task_id: &TaskId, size: u64) -> Vec<u8> {
    let size = size.max(256) as usize;
    let head = format!(
        r#"{{"task":{{"task_id":"{task_id}","instructions":"Fix the failing flow"}},"system_prompt":"You are FlowEngine's planning model.","messages":["#
    );
    let tail = "]}";
    let mut out = head.into_bytes();
    let mut turn = 0u64;
    // Turns of ~2 KB until near the target, then pad the last turn's text to land exactly.
    loop {
        let prefix = format!(
            r#"{}{{"role":"{}","turn":{turn},"content":""#,
            if turn == 0 { "" } else { "," },
            if turn.is_multiple_of(2) {
                "user"
            } else {
                "assistant"
            }
        );
        let suffix = r#""}"#;
        let fixed = out.len() + prefix.len() + suffix.len() + tail.len();
        if fixed > size && turn > 0 {
            break;
        }
        let room = size.saturating_sub(fixed);
        let take = if room <= 2048 + prefix.len() + suffix.len() + 16 {
            room
        } else {
            2000
        };
        out.extend_from_slice(prefix.as_bytes());
        out.extend((0..take).map(|i| b"lorem ipsum dolor sit amet "[i % 27]));
        out.extend_from_slice(suffix.as_bytes());
        turn += 1;
        if take == room {
            break;
        }
    }
    out.extend_from_slice(tail.as_bytes());
    out
}
