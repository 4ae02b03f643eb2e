//! A transform component written by hand (WebAssembly text), for what no
//! compiler emits: several linear memories, several tables, many core
//! instances. It satisfies the contract: each record's payload becomes the
//! `seq` label of one `wat` sample. A record starting with `!m` first grows
//! every extra memory, one starting with `!t` every extra table; if a
//! growth fails it traps (as a Rust guest aborts), else it writes its
//! sample like any other.

/// What the component holds besides its main memory.
#[derive(Clone, Copy, Default)]
pub struct Hog {
    /// Extra linear memories, each empty at first.
    pub memories: u32,
    /// Pages (64 KiB) each extra memory grows by on `!m`.
    pub pages: u32,
    /// Tables, each empty at first.
    pub tables: u32,
    /// Elements each table grows by on `!t`.
    pub elements: u32,
    /// Elements each table holds from the start.
    pub initial_elements: u32,
    /// Extra core instances (of an empty module).
    pub instances: u32,
}

const PREFIX: &str = r#"{"metric":{"__name__":"wat","seq":""#;
const SUFFIX: &str = "\"},\"values\":[1],\"timestamps\":[1795600862000]}\n";

/// `s` as a WAT string literal's contents.
fn wat_str(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Hog {
    /// The component, as a binary.
    pub fn wasm(&self) -> Vec<u8> {
        wat::parse_str(self.text()).expect("the hog's WAT is valid")
    }

    fn text(&self) -> String {
        let memories: String = (0..self.memories)
            .map(|i| format!("(memory $x{i} 0)\n"))
            .collect();
        let tables: String = (0..self.tables)
            .map(|i| format!("(table $t{i} {} funcref)\n", self.initial_elements))
            .collect();
        let grow_memories: String = (0..self.memories)
            .map(|i| {
                format!(
                    "(if (i32.eq (memory.grow $x{i} (i32.const {})) (i32.const -1)) (then unreachable))\n",
                    self.pages
                )
            })
            .collect();
        let grow_tables: String = (0..self.tables)
            .map(|i| {
                format!(
                    "(if (i32.eq (table.grow $t{i} (ref.null func) (i32.const {})) (i32.const -1)) (then unreachable))\n",
                    self.elements
                )
            })
            .collect();
        let instances: String = (0..self.instances)
            .map(|_| "(core instance (instantiate $empty))\n".to_string())
            .collect();
        COMPONENT
            .replace("{MEMORIES}", &memories)
            .replace("{TABLES}", &tables)
            .replace("{GROW_MEMORIES}", &grow_memories)
            .replace("{GROW_TABLES}", &grow_tables)
            .replace("{INSTANCES}", &instances)
            .replace("{PREFIX}", &wat_str(PREFIX))
            .replace("{PREFIX_LEN}", &PREFIX.len().to_string())
            .replace("{SUFFIX}", &wat_str(SUFFIX))
            .replace("{SUFFIX_LEN}", &SUFFIX.len().to_string())
    }
}

/// The core module: a bump allocator over memory 0 (reset after each
/// call), `init` that accepts anything, and `transform`.
const COMPONENT: &str = r#"
(component
  (core module $m
    (memory (export "memory") 1)
    {MEMORIES}
    {TABLES}
    (global $heap (mut i32) (i32.const 1024))
    (data (i32.const 16) "{PREFIX}")
    (data (i32.const 512) "{SUFFIX}")
    (func $alloc (param $size i32) (param $align i32) (result i32)
      (local $p i32)
      (local.set $p (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get $align))))
      (global.set $heap (i32.add (local.get $p) (local.get $size)))
      (block $enough
        (loop $grow
          (br_if $enough (i32.le_u (global.get $heap)
                                   (i32.mul (memory.size) (i32.const 65536))))
          (if (i32.eq (memory.grow (i32.const 16)) (i32.const -1)) (then unreachable))
          (br $grow)))
      (local.get $p))
    (func (export "realloc") (param $old i32) (param $old_size i32) (param $align i32)
                             (param $new_size i32) (result i32)
      (local $p i32)
      (local.set $p (call $alloc (local.get $new_size) (local.get $align)))
      (if (local.get $old)
        (then (memory.copy (local.get $p) (local.get $old) (local.get $old_size))))
      (local.get $p))
    (func (export "reset") (param i32)
      (global.set $heap (i32.const 1024)))
    (func (export "init") (param i32 i32) (result i32)
      (local $r i32)
      (local.set $r (call $alloc (i32.const 12) (i32.const 4)))
      (i32.store8 (local.get $r) (i32.const 0))
      (local.get $r))
    (func $misbehave (param $second i32)
      (if (i32.eq (local.get $second) (i32.const 109)) ;; 'm'
        (then {GROW_MEMORIES}))
      (if (i32.eq (local.get $second) (i32.const 116)) ;; 't'
        (then {GROW_TABLES})))
    (func (export "transform") (param $rec i32) (param $rec_len i32) (param $ends i32)
                               (param $n i32) (result i32)
      (local $i i32) (local $start i32) (local $end i32) (local $body i32)
      (local $out i32) (local $samples i32) (local $r i32)
      (local.set $body (call $alloc
        (i32.add (i32.mul (local.get $n) (i32.const 256)) (local.get $rec_len))
        (i32.const 1)))
      (local.set $out (local.get $body))
      (block $done
        (loop $each
          (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
          (local.set $end (i32.load (i32.add (local.get $ends)
                                             (i32.shl (local.get $i) (i32.const 2)))))
          (if (i32.eq (i32.load8_u (i32.add (local.get $rec) (local.get $start)))
                      (i32.const 33)) ;; '!'
            (then (call $misbehave (i32.load8_u
              (i32.add (local.get $rec) (i32.add (local.get $start) (i32.const 1)))))))
          (memory.copy (local.get $out) (i32.const 16) (i32.const {PREFIX_LEN}))
          (local.set $out (i32.add (local.get $out) (i32.const {PREFIX_LEN})))
          (memory.copy (local.get $out) (i32.add (local.get $rec) (local.get $start))
                       (i32.sub (local.get $end) (local.get $start)))
          (local.set $out (i32.add (local.get $out) (i32.sub (local.get $end) (local.get $start))))
          (memory.copy (local.get $out) (i32.const 512) (i32.const {SUFFIX_LEN}))
          (local.set $out (i32.add (local.get $out) (i32.const {SUFFIX_LEN})))
          (local.set $samples (i32.add (local.get $samples) (i32.const 1)))
          (local.set $start (local.get $end))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $each)))
      (local.set $r (call $alloc (i32.const 20) (i32.const 4)))
      (i32.store (local.get $r) (local.get $body))
      (i32.store offset=4 (local.get $r) (i32.sub (local.get $out) (local.get $body)))
      (i32.store offset=8 (local.get $r) (local.get $samples))
      (i32.store offset=12 (local.get $r) (i32.const 0))
      (i32.store offset=16 (local.get $r) (i32.const 0))
      (local.get $r))
  )
  (core module $empty)
  {INSTANCES}
  (core instance $i (instantiate $m))
  (alias core export $i "memory" (core memory $mem))
  (alias core export $i "realloc" (core func $realloc))
  (type $record-error-def (record (field "index" u32) (field "reason" string)
                                  (field "detail" string)))
  (export $record-error "record-error" (type $record-error-def))
  (type $batch-output-def (record (field "body" (list u8)) (field "samples" u32)
                                  (field "errors" (list $record-error))))
  (export $batch-output "batch-output" (type $batch-output-def))
  (func $init (param "config" (list (tuple string string))) (result (result (error string)))
    (canon lift (core func $i "init") (memory $mem) (realloc $realloc) string-encoding=utf8))
  (func $transform (param "records" (list u8)) (param "ends" (list u32)) (result $batch-output)
    (canon lift (core func $i "transform") (memory $mem) (realloc $realloc)
                string-encoding=utf8 (post-return (func $i "reset"))))
  (instance $guest
    (export "record-error" (type $record-error))
    (export "batch-output" (type $batch-output))
    (export "init" (func $init))
    (export "transform" (func $transform)))
  (export "pmacct:transform/guest@1.0.0" (instance $guest))
)
"#;
