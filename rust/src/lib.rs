//! `sekuire.runtime._regorus`: regorus' compiled Rego VM (RVM) as one thread-safe Python class.
//!
//! A [`Policy`] holds the modules and the data, compiles each entry point once into an immutable
//! RVM program, and evaluates on a pool of VMs: any number of Python threads may share it, and
//! every evaluation runs with the GIL released. Queries that exhaust the RVM's instruction budget
//! are finished by regorus' interpreter, as before. Panics never cross into Python uncaught, and
//! never print: they become exceptions like any other regorus error.

mod convert;

use std::cell::Cell;
use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Once, OnceLock, RwLock};

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::program::{DeserializationResult, Program};
use regorus::rvm::vm::{RegoVM, VmError};
use regorus::{compile_policy_with_entrypoint, CompiledPolicy, PolicyModule, Rc, Value};

create_exception!(sekuire.runtime._regorus, RegorusError, PyException, "Any regorus failure.");
create_exception!(sekuire.runtime._regorus, CompileError, RegorusError, "The modules, the data or an entry point do not compile.");
create_exception!(sekuire.runtime._regorus, EvalError, RegorusError, "Evaluation failed (a built-in error, a conflict, a panic).");
create_exception!(sekuire.runtime._regorus, UndefinedError, RegorusError, "The entry point is undefined for this input.");

/// Idle VMs kept per entry point; more threads than this still work, their extra VMs are dropped.
const MAX_IDLE_VMS: usize = 64;

enum Failure {
    Compile(String),
    Eval(String),
    Undefined,
}

impl From<Failure> for PyErr {
    fn from(failure: Failure) -> PyErr {
        match failure {
            Failure::Compile(message) => CompileError::new_err(message),
            Failure::Eval(message) => EvalError::new_err(message),
            Failure::Undefined => UndefinedError::new_err("undefined"),
        }
    }
}

// -- panics: caught, silent, mapped ---------------------------------------------------------

thread_local! {
    /// True while this thread runs regorus code for Python: its panics are caught and reported as exceptions.
    static IN_ENGINE: Cell<bool> = const { Cell::new(false) };
}

static QUIET_HOOK: Once = Once::new();

/// Wrap the process' panic hook once: panics inside the engine print nothing (whatever
/// RUST_BACKTRACE says); every other panic goes to the hook that was there before.
fn install_quiet_hook() {
    QUIET_HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !IN_ENGINE.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "unknown panic".to_owned()
    }
}

/// Run `f`, turning a panic into `failure(message)`.
fn guarded<T>(failure: fn(String) -> Failure, f: impl FnOnce() -> Result<T, Failure>) -> Result<T, Failure> {
    let outer = IN_ENGINE.with(|flag| flag.replace(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    IN_ENGINE.with(|flag| flag.set(outer));
    result.unwrap_or_else(|payload| Err(failure(format!("regorus panicked: {}", panic_message(&*payload)))))
}

/// One line per cause (anyhow's alternate form), never a backtrace.
fn describe(error: &anyhow::Error) -> String {
    format!("{error:#}")
}

// A poisoned lock only means a panic was caught while it was held; the data behind these stays valid
// (a VM is never returned to the pool by a run that failed).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

// -- at most one evaluation per CPU ---------------------------------------------------------------

/// Evaluations running at once, process-wide, are capped at the CPU count: more would only
/// time-slice, and regorus' global compiled-regex cache (a mutex) convoys when its holder is
/// preempted. Callers beyond the cap wait here, with the GIL released.
struct Gate {
    free: Mutex<usize>,
    freed: Condvar,
}

struct Pass<'a>(&'a Gate);

impl Gate {
    fn global() -> &'static Gate {
        static GATE: OnceLock<Gate> = OnceLock::new();
        GATE.get_or_init(|| {
            let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
            Gate { free: Mutex::new(cpus), freed: Condvar::new() }
        })
    }

    fn enter(&self) -> Pass<'_> {
        let mut free = lock(&self.free);
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        *free -= 1;
        Pass(self)
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        *lock(&self.0.free) += 1;
        self.0.freed.notify_one();
    }
}

// -- the policy ---------------------------------------------------------------------------------

/// One compiled entry point: the RVM program, the interpreter's compiled policy, idle VMs (at most
/// one per CPU ever exists, as VMs are only taken inside the gate).
struct Entry {
    /// The program serialized: each VM loads its own copy, so threads share no reference counts.
    program_bytes: Vec<u8>,
    interpreter: CompiledPolicy,
    idle: Mutex<Vec<RegoVM>>,
}

/// Rego modules and data, compiled per entry point, evaluated by any thread with the GIL released.
#[pyclass(frozen, module = "sekuire.runtime._regorus")]
struct Policy {
    modules: Vec<PolicyModule>,
    data: Value,
    data_json: String,
    entries: RwLock<HashMap<String, Arc<Entry>>>,
    compiling: Mutex<()>,
}

impl Policy {
    /// A VM with its own copy of the program and of the data: VMs on different threads then touch no
    /// common reference count (sharing them cost a third of the throughput on two cores).
    fn new_vm(&self, bytes: &[u8]) -> Result<RegoVM, String> {
        let program = match Program::deserialize_binary(bytes)? {
            DeserializationResult::Complete(program) => Arc::new(program),
            DeserializationResult::Partial(_) => return Err("the compiled program is incomplete".to_owned()),
        };
        let data = Value::from_json_str(&self.data_json).map_err(|error| describe(&error))?;
        let mut vm = RegoVM::new();
        vm.load_program(program);
        vm.set_data(data).map_err(|error| error.to_string())?;
        Ok(vm)
    }

    fn cached(&self, rule: &str) -> Option<Arc<Entry>> {
        let entries = self.entries.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.get(rule).cloned()
    }

    /// The entry for `rule`, compiled on first use (once, whichever threads ask).
    fn entry(&self, rule: &str) -> Result<Arc<Entry>, Failure> {
        if let Some(entry) = self.cached(rule) {
            return Ok(entry);
        }
        let _compiling = lock(&self.compiling);
        if let Some(entry) = self.cached(rule) {
            return Ok(entry);
        }
        let compile = |error: &anyhow::Error| Failure::Compile(describe(error));
        let interpreter =
            compile_policy_with_entrypoint(self.data.clone(), &self.modules, Rc::from(rule)).map_err(|e| compile(&e))?;
        let program = Compiler::compile_from_policy(&interpreter, &[rule]).map_err(|e| Failure::Compile(e.to_string()))?;
        // A first VM now: a conflict between the data and the rules is a compile error, not a decision's.
        let program_bytes = program.serialize_binary().map_err(Failure::Compile)?;
        let vm = self.new_vm(&program_bytes).map_err(Failure::Compile)?;
        let entry = Arc::new(Entry { program_bytes, interpreter, idle: Mutex::new(vec![vm]) });
        let mut entries = self.entries.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.insert(rule.to_owned(), entry.clone());
        Ok(entry)
    }

    /// Evaluate `rule` on an idle VM (or a new one); the interpreter finishes what exhausts the VM's budget.
    fn run(&self, rule: &str, input: Value) -> Result<Value, Failure> {
        let entry = self.entry(rule)?;
        let pass = Gate::global().enter();
        let idle = lock(&entry.idle).pop();
        let mut vm = match idle {
            Some(vm) => vm,
            None => self.new_vm(&entry.program_bytes).map_err(Failure::Eval)?,
        };
        vm.set_input(input.clone());
        let outcome = vm.execute_entry_point_by_name(rule);
        let value = match outcome {
            Ok(value) => {
                vm.set_input(Value::Null);
                let mut idle = lock(&entry.idle);
                if idle.len() < MAX_IDLE_VMS {
                    idle.push(vm);
                }
                value
            }
            // The RVM stops after a fixed number of instructions (25,000) that big inputs, such as a
            // manifest with hundreds of tools, can need more of; the interpreter has no such budget.
            // A VM that failed is dropped, never reused.
            Err(VmError::InstructionLimitExceeded { .. }) => {
                entry.interpreter.eval_with_input(input).map_err(|error| Failure::Eval(describe(&error)))?
            }
            Err(error) => return Err(Failure::Eval(error.to_string())),
        };
        drop(pass);
        if value == Value::Undefined {
            return Err(Failure::Undefined);
        }
        Ok(value)
    }

    fn run_interpreter(&self, rule: &str, input: Value) -> Result<Value, Failure> {
        let value = self.entry(rule)?.interpreter.eval_with_input(input).map_err(|e| Failure::Eval(describe(&e)))?;
        if value == Value::Undefined {
            return Err(Failure::Undefined);
        }
        Ok(value)
    }
}

fn to_json(value: &Value) -> Result<String, Failure> {
    serde_json::to_string(value).map_err(|error| Failure::Eval(format!("cannot encode the result: {error}")))
}

#[pymethods]
impl Policy {
    /// `modules`: (file name, Rego source) pairs; `data_json`: the data document as JSON text.
    #[new]
    fn new(py: Python<'_>, modules: Vec<(String, String)>, data_json: &str) -> PyResult<Self> {
        install_quiet_hook();
        let modules = modules
            .into_iter()
            .map(|(id, content)| PolicyModule { id: Rc::from(id), content: Rc::from(content) })
            .collect();
        let data = py.detach(|| {
            guarded(Failure::Compile, || {
                Value::from_json_str(data_json).map_err(|error| Failure::Compile(format!("data: {}", describe(&error))))
            })
        })?;
        Ok(Self { modules, data, data_json: data_json.to_owned(), entries: RwLock::new(HashMap::new()), compiling: Mutex::new(()) })
    }

    /// Compile `rule` (a rule reference such as ``data["p"]["allow"]``) now; CompileError if it cannot be.
    fn compile(&self, py: Python<'_>, rule: &str) -> PyResult<()> {
        py.detach(|| guarded(Failure::Compile, || self.entry(rule).map(drop)))?;
        Ok(())
    }

    /// The value of `rule` for `input` (JSON-like Python objects) as Python objects.
    fn evaluate<'py>(&self, py: Python<'py>, rule: &str, input: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let input = convert::to_value(input)?;
        let value = py.detach(|| guarded(Failure::Eval, || self.run(rule, input)))?;
        convert::to_python(py, &value)
    }

    /// The value of `rule` for `input` (JSON-like Python objects) as compact JSON text, keys sorted: equal
    /// answers are equal strings, so a caller can reuse what it decoded from the same text before.
    fn evaluate_text(&self, py: Python<'_>, rule: &str, input: &Bound<'_, PyAny>) -> PyResult<String> {
        let input = convert::to_value(input)?;
        Ok(py.detach(|| guarded(Failure::Eval, || to_json(&self.run(rule, input)?)))?)
    }

    /// The value of `rule` for `input_json` (JSON text) as compact JSON text.
    fn evaluate_json(&self, py: Python<'_>, rule: &str, input_json: &str) -> PyResult<String> {
        Ok(py.detach(|| {
            guarded(Failure::Eval, || {
                let input = Value::from_json_str(input_json)
                    .map_err(|error| Failure::Eval(format!("input: {}", describe(&error))))?;
                to_json(&self.run(rule, input)?)
            })
        })?)
    }

    /// Like `evaluate`, by regorus' tree-walking interpreter only (for differential tests).
    fn interpret<'py>(&self, py: Python<'py>, rule: &str, input: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let input = convert::to_value(input)?;
        let value = py.detach(|| guarded(Failure::Eval, || self.run_interpreter(rule, input)))?;
        convert::to_python(py, &value)
    }

    /// Idle VMs per compiled entry point (for tests and diagnostics).
    fn idle_vms(&self, py: Python<'_>) -> HashMap<String, usize> {
        py.detach(|| {
            let entries = self.entries.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            entries.iter().map(|(rule, entry)| (rule.clone(), lock(&entry.idle).len())).collect()
        })
    }
}

/// Test hook: panic inside the engine's guard, as a regorus bug would.
#[pyfunction]
fn _panic_for_test(py: Python<'_>, message: &str) -> PyResult<()> {
    install_quiet_hook();
    py.detach(|| guarded(Failure::Eval, || -> Result<(), Failure> { panic!("{message}") }))?;
    Ok(())
}

#[pymodule]
fn _regorus(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Policy>()?;
    m.add("RegorusError", py.get_type::<RegorusError>())?;
    m.add("CompileError", py.get_type::<CompileError>())?;
    m.add("EvalError", py.get_type::<EvalError>())?;
    m.add("UndefinedError", py.get_type::<UndefinedError>())?;
    m.add("MAX_DEPTH", convert::MAX_DEPTH)?;
    m.add_function(wrap_pyfunction!(_panic_for_test, m)?)?;
    m.add("__all__", ["CompileError", "EvalError", "MAX_DEPTH", "Policy", "RegorusError", "UndefinedError"])?;
    Ok(())
}
