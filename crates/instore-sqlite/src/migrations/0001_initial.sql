-- Owners: one row per registration of a host, with its lease.
create table owners (
    id blob primary key,
    host_type text,
    metadata blob not null,
    metadata_encoding integer not null,
    machine text not null,
    created_at integer not null,
    lease_expires_at integer not null
) without rowid;

-- Instances: scheduling columns first, blobs last.
-- state: 1 uninitialized, 2 initialized, 3 completed.
-- status: 1 executing, 2 idle, 3 closed, 4 faulted, 5 canceled, 6 terminated.
-- ready_at: while unlocked, since when it is runnable (unlock time if executing, else its timer).
create table instances (
    id blob primary key,
    state integer not null,
    lock_owner blob,
    last_lock_owner blob,
    lock_version integer not null,
    status integer not null,
    timer integer,
    ready_at integer,
    suspended integer not null default 0,
    suspension_reason text,
    exception_name text,
    exception_message text,
    host_type text,
    bookmarks text not null default '[]',
    created_at integer not null,
    updated_at integer not null,
    data blob not null,
    data_encoding integer not null,
    data_len integer not null,
    metadata blob not null,
    metadata_encoding integer not null,
    metadata_len integer not null
);
create index instances_ready on instances (host_type, ready_at) where lock_owner is null and ready_at is not null;
create index instances_locked on instances (lock_owner, host_type) where lock_owner is not null;

-- Keys: state 1 associated, 2 completed. Freed keys are deleted.
create table keys (
    id blob primary key,
    instance blob not null,
    state integer not null,
    metadata blob not null,
    metadata_encoding integer not null
) without rowid;
create index keys_instance on keys (instance);
