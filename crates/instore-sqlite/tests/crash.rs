//! The crash test: a child process saving concurrently is SIGKILLed at random moments; after
//! reopening, every acknowledged save is present and intact, and the database passes
//! `PRAGMA integrity_check`.
//!
//! The child is this test binary run again (`crash_child`, ignored in normal runs). It opens the
//! store, registers an owner and runs [`TASKS`] tasks, each saving its own instances as fast as it
//! can. Save `seq` of an instance is fully determined by `(instance, seq)`: its data (sequence
//! number, a 1–8 KiB payload and its checksum), its kind (plain data, a metadata change, a new
//! key, an unlock, a completion) and so the whole state of the instance after it. After each save
//! that returned `Ok`, the child prints `ack <instance> <seq> <kind>`.
//!
//! The parent ([`crash_test`]) waits a random 50–500 ms after the first ack, SIGKILLs the child,
//! reopens the file with the provider (recovering the killed WAL, then writing to it), checks
//! `PRAGMA integrity_check`, and reads every row back raw. For each instance the stored save must
//! be the last acknowledged one or the one after it (committed, killed before its ack), and data,
//! metadata, keys, completion and lock must be exactly what replaying saves `1..=seq` gives. The
//! next round runs on the same file. Every round re-checks every instance of every earlier round.
#![cfg(unix)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use instore::encoding::decode;
use instore::{
    apply_changes, bag, CreateOwner, Encoding, InstanceId, InstanceStore, InstanceValue, KeyId,
    KeyState, MetadataChange, MetadataChanges, NewKey, OwnerId, PropertyBag, Save, Value,
};
use instore_sqlite::SqliteProvider;
use rand::Rng;
use rusqlite::{Connection, OpenFlags};

/// Kills (SIGKILLs) per run; `INSTORE_CRASH_ROUNDS` overrides it for longer local runs.
const ROUNDS: usize = 20;
/// Concurrent saving tasks in the child.
const TASKS: usize = 16;
/// The child's database path.
const DB_ENV: &str = "INSTORE_CRASH_DB";
/// The child's test name.
const CHILD: &str = "crash_child";
/// Timeout of one command in the child.
const TIMEOUT: Duration = Duration::from_secs(30);
/// A child that was never killed stops by itself after this long (and says so).
const CHILD_LIFETIME: Duration = Duration::from_secs(60);
/// Longest wait for the child's first ack.
const FIRST_ACK_WAIT: Duration = Duration::from_secs(60);
/// Kill this long (ms, uniformly random) after the first ack.
const KILL_AFTER_MS: std::ops::RangeInclusive<u64> = 50..=500;

// ---------------------------------------------------------------------------------------------
// The deterministic workload: everything about save `seq` of an instance follows from
// `(instance, seq)`, so the verifier can recompute the exact expected state of any stored seq.
// ---------------------------------------------------------------------------------------------

/// What a save does besides replacing the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Data only; the lock stays held.
    Data,
    /// Data and metadata changes.
    Meta,
    /// Data and a new key.
    Key,
    /// Data, then unlock (the next save takes the lock again).
    Unlock,
    /// Data, then complete (completes the keys; the instance is done).
    Complete,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Data => "data",
            Kind::Meta => "meta",
            Kind::Key => "key",
            Kind::Unlock => "unlock",
            Kind::Complete => "complete",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "data" => Kind::Data,
            "meta" => Kind::Meta,
            "key" => Kind::Key,
            "unlock" => Kind::Unlock,
            "complete" => Kind::Complete,
            _ => return None,
        })
    }
}

/// splitmix64's finalizer.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn seed(instance: InstanceId, seq: u64, salt: u64) -> u64 {
    let u = instance.as_uuid().as_u128();
    mix(mix(u as u64 ^ salt) ^ mix((u >> 64) as u64) ^ seq.wrapping_mul(0xd6e8_feb8_6659_fd93))
}

/// FNV-1a, 64 bits: the checksum stored next to the payload.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn kind_of(instance: InstanceId, seq: u64) -> Kind {
    if seq == 1 {
        return Kind::Data;
    }
    match seed(instance, seq, 1) % 100 {
        0..=7 => Kind::Meta,
        8..=13 => Kind::Key,
        14..=19 => Kind::Unlock,
        20..=22 => Kind::Complete,
        _ => Kind::Data,
    }
}

/// 1–8 KiB; half of them noise, half a compressible pattern (so both raw and zstd rows occur).
fn payload(instance: InstanceId, seq: u64) -> Vec<u8> {
    let s = seed(instance, seq, 2);
    let len = 1024 + (s % (7 * 1024 + 1)) as usize;
    if s & 1 == 0 {
        let mut out = Vec::with_capacity(len + 8);
        let mut state = s;
        while out.len() < len {
            state = mix(state);
            out.extend_from_slice(&state.to_le_bytes());
        }
        out.truncate(len);
        out
    } else {
        let word = s.to_le_bytes();
        (0..len).map(|i| word[i % 8] ^ (i / 64) as u8).collect()
    }
}

fn data_bag(instance: InstanceId, seq: u64) -> PropertyBag {
    let payload = payload(instance, seq);
    let sum = fnv(&payload);
    bag([
        ("crash:instance", InstanceValue::new(instance.to_string())),
        ("crash:seq", InstanceValue::new(seq as i64)),
        ("crash:sum", InstanceValue::new(sum as i64)),
        ("crash:payload", InstanceValue::new(payload)),
        (
            "crash:note",
            InstanceValue::write_only(format!("save {seq}")),
        ),
    ])
}

fn meta_changes(seq: u64) -> MetadataChanges {
    let even = if seq % 2 == 0 {
        MetadataChange::Set(InstanceValue::new(true))
    } else {
        MetadataChange::Deleted
    };
    vec![
        (
            "crash:meta".to_owned(),
            MetadataChange::Set(InstanceValue::new(seq as i64)),
        ),
        ("crash:even".to_owned(), even),
    ]
}

fn key_of(instance: InstanceId, seq: u64) -> KeyId {
    KeyId::derive(instance.as_uuid(), &format!("crash-key-{seq}"))
}

fn key_metadata(seq: u64) -> PropertyBag {
    bag([("crash:key_seq", seq as i64)])
}

fn save_for(instance: InstanceId, seq: u64) -> (Save, Kind) {
    let kind = kind_of(instance, seq);
    let mut save = Save::data(data_bag(instance, seq));
    match kind {
        Kind::Data => {}
        Kind::Meta => save.metadata_changes = meta_changes(seq),
        Kind::Key => {
            save.keys_to_associate = vec![NewKey {
                key: key_of(instance, seq),
                metadata: key_metadata(seq),
            }]
        }
        Kind::Unlock => save = save.and_unlock(),
        Kind::Complete => save = save.and_complete(),
    }
    (save, kind)
}

type Keys = BTreeMap<KeyId, (KeyState, PropertyBag)>;

/// An instance as it must be stored once saves `1..=seq` (and no others) have committed.
#[derive(Debug, PartialEq)]
struct Expected {
    data: PropertyBag,
    metadata: PropertyBag,
    keys: Keys,
    completed: bool,
    locked: bool,
}

fn expected_at(instance: InstanceId, seq: u64) -> Result<Expected, String> {
    let mut e = Expected {
        data: data_bag(instance, seq),
        metadata: PropertyBag::new(),
        keys: Keys::new(),
        completed: false,
        locked: true,
    };
    for s in 1..=seq {
        if e.completed {
            return Err(format!(
                "stored save {seq} comes after the completing save {}",
                s - 1
            ));
        }
        let kind = kind_of(instance, s);
        match kind {
            Kind::Data | Kind::Unlock => {}
            Kind::Meta => apply_changes(&mut e.metadata, &meta_changes(s)),
            Kind::Key => {
                e.keys
                    .insert(key_of(instance, s), (KeyState::Associated, key_metadata(s)));
            }
            Kind::Complete => {
                e.completed = true;
                for (state, _) in e.keys.values_mut() {
                    *state = KeyState::Completed;
                }
            }
        }
        e.locked = !matches!(kind, Kind::Unlock | Kind::Complete);
    }
    Ok(e)
}

// ---------------------------------------------------------------------------------------------
// The child.
// ---------------------------------------------------------------------------------------------

/// Writes one whole line to stdout and flushes it (one `write` of a short line to a pipe is
/// atomic, so a kill never leaves half an ack that parses).
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let text = format!("{line}\n");
    if out
        .write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        // The parent is gone.
        std::process::exit(5);
    }
}

fn fail(why: &str) -> ! {
    say(&format!("fail {why}"));
    std::process::exit(3);
}

/// Run by [`crash_test`] in a child process; does nothing when run by hand without its database.
#[test]
#[ignore = "the child process of crash_test, which starts it"]
fn crash_child() {
    let Some(path) = std::env::var_os(DB_ENV) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(child_main(PathBuf::from(path)));
}

async fn child_main(path: PathBuf) {
    // The first line absorbs libtest's "test crash_child ... " prefix.
    say("start");
    let provider = SqliteProvider::open(&path)
        .await
        .unwrap_or_else(|e| fail(&format!("open {}: {e}", path.display())));
    let store = InstanceStore::builder(provider)
        .build()
        .unwrap_or_else(|e| fail(&format!("build the store: {e}")));
    let handle = store.create_handle();
    store
        .execute(&handle, CreateOwner::default(), TIMEOUT)
        .await
        .unwrap_or_else(|e| fail(&format!("create owner: {e}")));
    let owner = handle.owner();
    for _ in 0..TASKS {
        tokio::spawn(saver(store.clone(), owner));
    }
    tokio::time::sleep(CHILD_LIFETIME).await;
    fail("the child was never killed");
}

/// Saves instance after instance, each save acknowledged on stdout once it returned `Ok`.
async fn saver(store: InstanceStore, owner: Option<OwnerId>) {
    loop {
        let instance = InstanceId::new();
        let mut handle = store.create_handle_for(owner, Some(instance));
        for seq in 1u64.. {
            let (save, kind) = save_for(instance, seq);
            if let Err(e) = store.execute(&handle, save, TIMEOUT).await {
                fail(&format!("save {instance} {seq} {}: {e}", kind.as_str()));
            }
            say(&format!("ack {instance} {seq} {}", kind.as_str()));
            match kind {
                Kind::Unlock => handle = store.create_handle_for(owner, Some(instance)),
                Kind::Complete => break,
                _ => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The parent.
// ---------------------------------------------------------------------------------------------

/// Kills the child if the parent fails half-way.
struct Reaper(Option<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One round: start the child, kill it `kill_after` after its first ack, return its lines.
fn run_child(path: &Path, kill_after: Duration) -> Vec<String> {
    let exe = std::env::current_exe().expect("the test binary");
    let child = Command::new(exe)
        .args([
            CHILD,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(DB_ENV, path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the child");
    let mut reaper = Reaper(Some(child));
    let child = reaper.0.as_mut().expect("the child");
    let stdout = child.stdout.take().expect("the child's stdout");
    let mut stderr = child.stderr.take().expect("the child's stderr");
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        loop {
            let mut line = String::new();
            match stdout.read_line(&mut line) {
                // A line cut short by the kill was never acknowledged: leave it out.
                Ok(n) if n > 0 && line.ends_with('\n') => {
                    let _ = tx.send(line.trim_end().to_owned());
                }
                _ => break,
            }
        }
    });
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let mut lines = Vec::new();
    let deadline = Instant::now() + FIRST_ACK_WAIT;
    let problem = loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                let first_ack = line.starts_with("ack ");
                let failed = line.starts_with("fail ");
                lines.push(line);
                if failed {
                    break Some("the child failed");
                }
                if first_ack {
                    break None;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => break Some("no ack in time"),
            Err(mpsc::RecvTimeoutError::Disconnected) => break Some("the child exited"),
        }
    };
    if problem.is_none() {
        std::thread::sleep(kill_after);
    }
    let exited = child.try_wait().expect("poll the child");
    // `Child::kill` is SIGKILL on Unix.
    child.kill().expect("SIGKILL the child");
    let status = child.wait().expect("reap the child");
    reaper.0 = None;
    reader.join().expect("the stdout reader");
    lines.extend(rx.try_iter());
    let stderr = errors.join().expect("the stderr reader");
    let fails: Vec<&String> = lines.iter().filter(|l| l.starts_with("fail ")).collect();
    if let Some(problem) = problem.or_else(|| exited.map(|_| "the child exited before the kill")) {
        panic!("{problem} ({status}): {fails:?}\nstderr:\n{stderr}");
    }
    assert!(
        fails.is_empty(),
        "the child failed: {fails:?}\nstderr:\n{stderr}"
    );
    assert_eq!(
        status.signal(),
        Some(9),
        "the child was not ended by SIGKILL: {status}"
    );
    lines
}

/// The last acknowledged save of an instance.
#[derive(Debug, Clone, Copy)]
struct Acked {
    seq: u64,
    kind: Kind,
}

/// Adds one round's ack lines; returns how many there were.
fn record_acks(lines: &[String], acks: &mut HashMap<InstanceId, Acked>) -> usize {
    let mut n = 0;
    for line in lines {
        let Some(rest) = line.strip_prefix("ack ") else {
            continue;
        };
        let parts: Vec<&str> = rest.split(' ').collect();
        let parsed = match parts[..] {
            [id, seq, kind] => id
                .parse::<InstanceId>()
                .ok()
                .zip(seq.parse::<u64>().ok())
                .zip(Kind::parse(kind)),
            _ => None,
        };
        let Some(((instance, seq), kind)) = parsed else {
            panic!("malformed ack line {line:?}");
        };
        let previous = acks.get(&instance).map_or(0, |a| a.seq);
        assert_eq!(
            seq,
            previous + 1,
            "instance {instance}: ack of save {seq} follows the ack of save {previous}"
        );
        assert_eq!(
            kind,
            kind_of(instance, seq),
            "ack line {line:?}: wrong kind"
        );
        acks.insert(instance, Acked { seq, kind });
        n += 1;
    }
    n
}

/// Opens the killed database with the provider (recovering its WAL), writes to it, and closes it.
fn reopen(rt: &tokio::runtime::Runtime, path: &Path) {
    rt.block_on(async {
        let provider = SqliteProvider::open(path)
            .await
            .expect("the provider reopens the killed database");
        let store = InstanceStore::builder(provider)
            .build()
            .expect("a store over it");
        let handle = store.create_handle();
        store
            .execute(&handle, CreateOwner::default(), TIMEOUT)
            .await
            .expect("a write after recovery");
        store.shutdown().await;
    });
}

/// What one verification saw.
#[derive(Debug, Default)]
struct Verified {
    problems: Vec<String>,
    instances: usize,
    acked: usize,
    /// Instances whose save after the last ack had committed (the kill cut its ack).
    ahead: usize,
    /// Instances whose first save had committed unacknowledged.
    unacked: usize,
    zstd: usize,
    completed: usize,
}

fn decode_bag(code: i64, bytes: &[u8]) -> Result<PropertyBag, String> {
    let code = i16::try_from(code).map_err(|_| format!("encoding code {code}"))?;
    let encoding = Encoding::from_code(code).map_err(|e| e.to_string())?;
    decode(encoding, bytes).map_err(|e| e.to_string())
}

fn uuid_of(bytes: &[u8]) -> Result<instore::Uuid, String> {
    instore::Uuid::from_slice(bytes).map_err(|e| format!("id of {} bytes: {e}", bytes.len()))
}

struct RawInstance {
    id: Vec<u8>,
    state: i64,
    locked: bool,
    lock_version: i64,
    data: Result<PropertyBag, String>,
    metadata: Result<PropertyBag, String>,
    zstd: bool,
}

fn read_rows(conn: &Connection) -> rusqlite::Result<(Vec<RawInstance>, Vec<RawKey>)> {
    let mut stmt = conn.prepare(
        "select id, state, lock_owner is not null, lock_version, data, data_encoding, metadata, \
         metadata_encoding from instances",
    )?;
    let instances = stmt
        .query_map([], |r| {
            let data_encoding: i64 = r.get(5)?;
            Ok(RawInstance {
                id: r.get(0)?,
                state: r.get(1)?,
                locked: r.get(2)?,
                lock_version: r.get(3)?,
                data: decode_bag(data_encoding, &r.get::<_, Vec<u8>>(4)?),
                metadata: decode_bag(r.get(7)?, &r.get::<_, Vec<u8>>(6)?),
                zstd: data_encoding == i64::from(Encoding::PostcardZstd.code()),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut stmt =
        conn.prepare("select id, instance, state, metadata, metadata_encoding from keys")?;
    let keys = stmt
        .query_map([], |r| {
            Ok(RawKey {
                id: r.get(0)?,
                instance: r.get(1)?,
                state: r.get(2)?,
                metadata: decode_bag(r.get(4)?, &r.get::<_, Vec<u8>>(3)?),
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((instances, keys))
}

struct RawKey {
    id: Vec<u8>,
    instance: Vec<u8>,
    state: i64,
    metadata: Result<PropertyBag, String>,
}

/// Checks the file (read-only): integrity, every acknowledged save, every row.
fn verify(path: &Path, acks: &HashMap<InstanceId, Acked>) -> Verified {
    let mut v = Verified::default();
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .expect("open the database read-only");
    conn.busy_timeout(Duration::from_secs(10))
        .expect("a busy timeout");
    let integrity: Vec<String> = conn
        .prepare("pragma integrity_check")
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .unwrap_or_else(|e| vec![format!("integrity_check failed to run: {e}")]);
    if integrity != ["ok"] {
        v.problems
            .push(format!("PRAGMA integrity_check: {integrity:?}"));
    }
    let (rows, raw_keys) = match read_rows(&conn) {
        Ok(read) => read,
        Err(e) => {
            v.problems.push(format!("reading the rows failed: {e}"));
            return v;
        }
    };

    let mut keys: HashMap<InstanceId, Keys> = HashMap::new();
    for k in raw_keys {
        let parsed = (|| {
            let id = KeyId::from_uuid(uuid_of(&k.id)?);
            let instance = InstanceId::from_uuid(uuid_of(&k.instance)?);
            let state = match k.state {
                1 => KeyState::Associated,
                2 => KeyState::Completed,
                other => return Err(format!("key {id}: state {other}")),
            };
            Ok((
                instance,
                id,
                state,
                k.metadata.map_err(|e| format!("key {id}: {e}"))?,
            ))
        })();
        match parsed {
            Ok((instance, id, state, metadata)) => {
                keys.entry(instance)
                    .or_default()
                    .insert(id, (state, metadata));
            }
            Err(e) => v.problems.push(format!("corrupt key row: {e}")),
        }
    }

    // Instances with a row, by the save stored; rows already reported as wrong.
    let mut seen: HashMap<InstanceId, u64> = HashMap::new();
    let mut bad: HashSet<InstanceId> = HashSet::new();
    for row in rows {
        v.instances += 1;
        v.zstd += usize::from(row.zstd);
        let instance = match uuid_of(&row.id) {
            Ok(u) => InstanceId::from_uuid(u),
            Err(e) => {
                v.problems.push(format!("corrupt instance row: {e}"));
                continue;
            }
        };
        let found = (|| {
            let data = row.data?;
            let metadata = row.metadata?;
            let seq = match data.get("crash:seq").map(|v| &v.value) {
                Some(Value::Int(seq)) if *seq >= 1 => *seq as u64,
                other => return Err(format!("no sequence number in the data: {other:?}")),
            };
            let expected = expected_at(instance, seq)?;
            let got = Expected {
                data,
                metadata,
                keys: keys.remove(&instance).unwrap_or_default(),
                completed: row.state == 3,
                locked: row.locked,
            };
            if !matches!(row.state, 2 | 3) {
                return Err(format!("save {seq}: state {}", row.state));
            }
            if row.lock_version != 1 {
                return Err(format!("save {seq}: lock version {}", row.lock_version));
            }
            if got != expected {
                let what: Vec<&str> = [
                    (got.data != expected.data, "data (payload/checksum)"),
                    (got.metadata != expected.metadata, "metadata"),
                    (got.keys != expected.keys, "keys"),
                    (got.completed != expected.completed, "completion"),
                    (got.locked != expected.locked, "lock"),
                ]
                .into_iter()
                .filter_map(|(differs, what)| differs.then_some(what))
                .collect();
                return Err(format!(
                    "save {seq} is stored with the wrong {}",
                    what.join(", ")
                ));
            }
            Ok((seq, expected.completed))
        })();
        match found {
            Ok((seq, completed)) => {
                v.completed += usize::from(completed);
                seen.insert(instance, seq);
            }
            Err(e) => {
                v.problems.push(format!("instance {instance}: {e}"));
                bad.insert(instance);
            }
        }
    }
    for (instance, k) in keys {
        v.problems.push(format!(
            "{} key row(s) of instance {instance}, which has no row",
            k.len()
        ));
    }

    for (instance, acked) in acks {
        v.acked += 1;
        match seen.get(instance) {
            None if bad.contains(instance) => {}
            None => v.problems.push(format!(
                "instance {instance}: LOST — acknowledged save {} ({}) is not stored",
                acked.seq,
                acked.kind.as_str()
            )),
            // The save after the last ack may have committed before the kill cut its ack.
            Some(&stored) if stored == acked.seq => {}
            Some(&stored) if stored == acked.seq + 1 => v.ahead += 1,
            Some(&stored) => v.problems.push(format!(
                "instance {instance}: acknowledged save {} ({}), but save {stored} is stored{}",
                acked.seq,
                acked.kind.as_str(),
                if stored < acked.seq { " — LOST" } else { "" }
            )),
        }
    }
    for (instance, stored) in &seen {
        // Save 2 only starts after save 1 was acknowledged.
        if acks.contains_key(instance) {
            continue;
        }
        v.unacked += 1;
        if *stored != 1 {
            v.problems.push(format!(
                "instance {instance}: save {stored} is stored, but not even save 1 was acknowledged"
            ));
        }
    }
    v
}

#[test]
fn crash_test() {
    let rounds = std::env::var("INSTORE_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(ROUNDS);
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("crash.db");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut rng = rand::thread_rng();
    let started = Instant::now();
    let mut acks: HashMap<InstanceId, Acked> = HashMap::new();
    let mut total_acks = 0;
    let mut killed_wal = 0;
    let mut last = Verified::default();
    for round in 1..=rounds {
        let kill_after = Duration::from_millis(rng.gen_range(KILL_AFTER_MS));
        let lines = run_child(&path, kill_after);
        let n = record_acks(&lines, &mut acks);
        total_acks += n;
        let wal = std::fs::metadata(path.with_extension("db-wal")).map_or(0, |m| m.len());
        killed_wal += usize::from(wal > 0);
        reopen(&rt, &path);
        let v = verify(&path, &acks);
        assert!(
            v.problems.is_empty(),
            "round {round} (killed {kill_after:?} after the first ack, {n} acks): {} problem(s):\n{}",
            v.problems.len(),
            v.problems.iter().take(30).cloned().collect::<Vec<_>>().join("\n")
        );
        println!(
            "round {round}: killed {kill_after:?} after the first ack, leaving a {wal}-byte WAL; \
             {n} acks; {} instances verified; {} new saves committed without their ack",
            v.instances,
            (v.ahead + v.unacked).saturating_sub(last.ahead + last.unacked)
        );
        last = v;
    }
    println!(
        "crash test: {rounds} rounds (SIGKILLs), {total_acks} acknowledged saves, {} instances \
         verified ({} with acks, {} completed, {} zstd); {killed_wal} kills left a WAL to recover; \
         {} saves committed unacknowledged; no acknowledged save lost, integrity_check ok, \
         in {:.1?}",
        last.instances,
        last.acked,
        last.completed,
        last.zstd,
        last.ahead + last.unacked,
        started.elapsed()
    );
}
