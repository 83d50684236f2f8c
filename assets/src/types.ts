// Wire types of the daemon's JSON API (see src/http/*.rs on the Rust side).

export type Role = 'admin' | 'user' | 'readonly';

export interface User {
  id: number;
  name: string;
  role: Role;
  disabled: boolean;
  created_at: string;
  password_changed_at?: string;
}

export interface Me {
  user: User;
  via: 'session' | 'api_key';
  scopes: string[];
  csrf_token: string | null;
}

export interface ApiKey {
  id: string;
  user_id?: number;
  user_name: string;
  name: string;
  scopes: string[];
  created_at: string;
  expires_at: string | null;
  last_used_at: string | null;
  revoked_at: string | null;
}

export interface Settings {
  temperature?: number;
  top_p?: number;
  top_k?: number;
  min_p?: number;
  repeat_penalty?: number;
  frequency_penalty?: number;
  presence_penalty?: number;
  seed?: number;
  max_tokens?: number;
  stop?: string[];
}

export interface Conversation {
  id: string;
  title: string;
  model: string;
  system_prompt: string;
  settings: Settings;
  /** Document collections whose passages the replies may cite. */
  collections?: number[];
  created_at: string;
  updated_at: string;
}

export type MessageStatus = 'complete' | 'cut_off' | 'error';

export interface Message {
  id: number;
  role: 'user' | 'assistant' | 'system';
  content: string;
  model?: string | null;
  status: MessageStatus;
  finish_reason?: string | null;
  prompt_tokens?: number | null;
  completion_tokens?: number | null;
  /** The passages an assistant reply was given, numbered as its `[n]` markers cite them. */
  sources?: Source[];
  created_at: string;
}

/** One cited passage of an assistant reply. */
export interface Source {
  n: number;
  document_id: number;
  document_name: string;
  chunk_id: number;
  page: number | null;
  heading: string | null;
}

export interface Page<T> {
  data: T[];
  next_cursor: string | null;
}

export interface SearchHit {
  conversation: Conversation;
  message_id: number | null;
  snippet: string;
}

export interface ModelInfo {
  id: string;
  meta?: {
    /** `chat`, `embedding` or `speech` (absent from older daemons: chat). */
    kind?: string;
    /** Speech models: whether it knows languages other than English (and can translate). */
    multilingual?: boolean;
    size_class?: string;
    architecture?: string | null;
    parameters?: number | null;
    quantization?: string | null;
    context_length?: number | null;
    size?: number | null;
  };
}

export interface GpuSample {
  index: number;
  name: string;
  utilization_percent: number | null;
  memory_used_bytes: number | null;
  memory_total_bytes: number | null;
  temperature_c: number | null;
  power_w: number | null;
}

export interface SystemSample {
  t: number;
  cpu_percent: number;
  memory_used_bytes: number;
  memory_total_bytes: number;
  disk_free_bytes: number;
  disk_total_bytes: number;
  gpus: GpuSample[];
}

export interface SystemInfo {
  interval_secs: number;
  samples: SystemSample[];
}

export interface Worker {
  name: string;
  pid: number;
  size_bytes: number;
  context_length: number;
  slots: number;
  running: number;
  waiting: number;
  expires_at: string | null;
}

export interface Status {
  version: string;
  pid: number;
  started_at: string;
  uptime_seconds: number;
  url: string;
  models: { loaded: string[]; workers: Worker[] };
  queue: { waiting: number; running: number };
  log_level: string;
  previous_run_unclean?: boolean;
}

export interface HealthCheck {
  name: string;
  status: 'ok' | 'warn' | 'fail';
  detail: string;
  hint?: string;
}

export interface Readiness {
  status: string;
  checks: HealthCheck[];
}

export interface UsageRow {
  user_name: string;
  day: string;
  requests: number;
  prompt_tokens: number;
  generated_tokens: number;
}

export interface AuditEntry {
  id: number;
  at: string;
  actor: string | null;
  action: string;
  target: string | null;
  ip: string | null;
  success: boolean;
  detail: unknown;
}

export interface Collection {
  id: number;
  name: string;
  description: string;
  shared: boolean;
  owner: string;
  documents: number;
  chunks: number;
  created_at: string;
  /** False for other users' shared collections (read-only to this user). */
  writable: boolean;
}

export type MediaType = 'text' | 'markdown' | 'html' | 'pdf' | 'docx' | 'xlsx' | 'csv' | 'json';
export type DocumentState = 'queued' | 'indexing' | 'ready' | 'failed';

/** A stored document (named so as not to shadow the DOM's `Document`). */
export interface DocumentInfo {
  id: number;
  collection_id: number;
  name: string;
  media_type: MediaType;
  size: number;
  state: DocumentState;
  error: string | null;
  pages: number | null;
  chunks: number;
  job_id: number | null;
  source_url: string | null;
  created_at: string;
  indexed_at: string | null;
}

/** The answer to an upload or a URL: new documents, and ids of identical ones already there. */
export interface AddedDocuments {
  documents: DocumentInfo[];
  duplicates: number[];
}

export interface Chunk {
  id: number;
  seq: number;
  page: number | null;
  /** Section path, "A > B". */
  heading: string | null;
  text: string;
  char_start: number;
  char_end: number;
}

export type JobState = 'queued' | 'running' | 'done' | 'failed' | 'cancelled';

export interface Job {
  id: number;
  kind: string;
  state: JobState;
  /** 0.0 to 1.0. */
  progress: number;
  note: string | null;
  attempts: number;
  error: string | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  document_id: number | null;
}

/** One ranked passage from `POST /api/v1/search`. */
export interface PassageHit {
  chunk_id: number;
  document_id: number;
  document_name: string;
  collection_id: number;
  page: number | null;
  heading: string | null;
  text: string;
  score: number;
  char_start: number;
  char_end: number;
}

export type TranscriptState = 'queued' | 'running' | 'done' | 'failed' | 'cancelled';

/** One word of a segment, when word timestamps were asked for. */
export interface TranscriptWord {
  word: string;
  start: number;
  end: number;
  probability: number;
}

/** A timed stretch of a transcript (seconds from the start of the recording). */
export interface TranscriptSegment {
  index: number;
  start: number;
  end: number;
  text: string;
  avg_logprob: number;
  no_speech_prob: number;
  words?: TranscriptWord[];
}

/** A stored transcript (`/api/v1/transcripts`); lists cut `text` to 200 characters and leave `segments` empty. */
export interface Transcript {
  id: number;
  /** The recording's file name. */
  name: string;
  model: string;
  task: 'transcribe' | 'translate';
  options: { language?: string | null; prompt?: string | null; temperature?: number; word_timestamps?: boolean };
  state: TranscriptState;
  error: string | null;
  /** Language code, once known. */
  language: string | null;
  /** Seconds of audio, once known. */
  duration: number | null;
  text: string;
  segments: TranscriptSegment[];
  job_id: number | null;
  created_at: string;
  finished_at: string | null;
}

/** The answer to `POST /api/v1/transcripts`. */
export interface NewTranscript {
  transcript: Transcript;
  job: Job;
}

/** What a model is for; the GPU scheduler places all three kinds. */
export type ModelKind = 'chat' | 'embedding' | 'speech';

/** `GET /api/v1/gpu` (administrators): the GPU scheduler's view. Numbers are bytes unless named otherwise. */
export interface GpuReport {
  state: 'available' | 'unavailable';
  /** When unavailable: why, in words. */
  reason: string | null;
  driver_version: string | null;
  /** The driver's CUDA version, e.g. "12.4". */
  cuda_version: string | null;
  devices: GpuDevice[];
  budget: GpuBudget;
  /** Null until `serve` has planned. */
  plan: StartupPlan | null;
  /** Models loaded now. */
  resident: Residency[];
  /** Loads waiting for VRAM, in order. */
  queue: QueuedLoad[];
}

export interface GpuBudget {
  /** Kept free for other processes and fragmentation. */
  reserve_bytes: number;
  /** The administrator's cap on what the daemon may use (null: all free VRAM). */
  limit_bytes: number | null;
  /** What the scheduler may still place now (null: no GPU). */
  available_bytes: number | null;
  /** The resident models' VRAM (measured where known, else estimated). */
  committed_bytes: number;
}

export interface GpuProcess {
  pid: number;
  used_bytes: number | null;
  name: string | null;
  /** A process of this daemon (a model worker). */
  ours: boolean;
  /** The model it holds, when ours. */
  model: string | null;
}

/** One GPU; the nullable fields are null when the driver does not report them. */
export interface GpuDevice {
  index: number;
  name: string;
  uuid: string;
  memory_total_bytes: number;
  memory_used_bytes: number;
  memory_free_bytes: number;
  utilization_percent: number | null;
  memory_utilization_percent: number | null;
  temperature_c: number | null;
  power_w: number | null;
  power_limit_w: number | null;
  ecc_corrected: number | null;
  ecc_uncorrected: number | null;
  /** NVML's names, e.g. `sw_power_cap`, `hw_slowdown`; empty: not throttled. */
  throttle_reasons: string[];
  processes: GpuProcess[];
}

export interface StartupPlan {
  /** RFC 3339. */
  planned_at: string;
  /** Free VRAM measured when planning (null: no GPU). */
  gpu_free_bytes: number | null;
  models: PlannedModel[];
  notes: string[];
}

export type Placement = 'gpu' | 'partial' | 'cpu';

export interface PlannedModel {
  name: string;
  kind: ModelKind;
  preload: boolean;
  gpu_layers: number;
  total_layers: number;
  vram_bytes: number;
  ram_bytes: number;
  placement: Placement;
  reason: string;
}

export interface Residency {
  name: string;
  kind: ModelKind;
  gpu_layers: number;
  estimate_bytes: number;
  measured_bytes: number | null;
  pinned: boolean;
  expires_at: string | null;
  in_use: boolean;
}

export interface QueuedLoad {
  position: number;
  model: string;
  kind: ModelKind;
  needs_bytes: number;
  waiting_secs: number;
}

/** Why an archive was made. */
export type BackupKind = 'manual' | 'scheduled' | 'pre-upgrade';

/** `GET /api/v1/backups` (administrators): the archives and the schedule that makes them. */
export interface BackupList {
  /** The directory the archives live in, on the daemon's host. */
  dir: string;
  /** Hours between scheduled backups; 0: no scheduled backups. */
  schedule_hours: number;
  /** How many archives the schedule keeps. */
  keep: number;
  /** RFC 3339 time of the newest good archive; null: none yet. */
  last_success_at: string | null;
  /** When the schedule makes the next one; null: the schedule is off. */
  next_due_at: string | null;
  /** The newest good backup is older than the schedule allows. */
  overdue: boolean;
  /** A `backup.create` job queued or running. */
  running_job: number | null;
  /** Newest first. */
  backups: BackupInfo[];
}

/** One archive in the backup directory. */
export interface BackupInfo {
  /** The file name, e.g. `appliance-20261202T161500Z.tar.zst`. */
  name: string;
  /** RFC 3339. */
  created_at: string;
  bytes: number;
  kind: BackupKind;
  /** The daemon version that wrote it. */
  app_version: string;
  schema_version: number;
  /** Model files are inside (else they are listed by name and checksum only). */
  with_models: boolean;
  /** Uploaded files inside. */
  files: number;
  /** Row counts per table. */
  rows: Record<string, number>;
}

/** The answer to `POST /api/v1/backups`: the `backup.create` job to follow. */
export interface NewBackup {
  job_id: number;
}

/** How a webhook target is spoken to. */
export type NotifyKind = 'json' | 'slack' | 'matrix' | 'email';

/** A configured webhook (`notify.webhooks`): the URL's secret parts are never sent. */
export interface NotifyTarget {
  kind: NotifyKind;
  host: string;
}

/** One notification sent (or tried) to one target, from the audit log. */
export interface Delivery {
  /** RFC 3339. */
  at: string;
  /** One of `NotificationsView.events`. */
  event: string;
  /** e.g. "Backup failed". */
  title: string;
  /** The target's kind and host: "slack hooks.slack.com". */
  target: string;
  success: boolean;
  attempts: number;
  /** The target's HTTP status of the last attempt; null: no connection. */
  status: number | null;
}

/** `GET /api/v1/notifications` (administrators): where notifications go and what went. */
export interface NotificationsView {
  targets: NotifyTarget[];
  /** The same event is not sent again more often than this. */
  min_interval_minutes: number;
  /** Every event kind that can be sent. */
  events: string[];
  /** Newest first, at most 100. */
  recent: Delivery[];
}

/** The answer to `POST /api/v1/notifications/test`: how many targets it was queued for. */
export interface NotifyTestResult {
  queued: number;
}

export type NotifySeverity = 'info' | 'warning' | 'critical';

/** An `event: notification` of `GET /api/v1/events` (administrators only). */
export interface LiveNotification {
  /** RFC 3339. */
  at: string;
  event: string;
  title: string;
  detail: string;
  severity: NotifySeverity;
}
