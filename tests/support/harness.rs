//! The runner of the test binaries that share a local stack: `cargo test`'s command line (name
//! filters, `--exact`, `--skip`, `--list`, `--ignored`, `--test-threads`, exit codes) through
//! libtest-mimic, with each test registered beside its function by `register_test!`.
//!
//! Tests run one at a time unless `--test-threads` says otherwise (they share one stack), in
//! the order of the numbers they are registered with. What they share is set up when the first
//! selected test starts, so `--list` or a filter that selects nothing starts nothing.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use libtest_mimic::{Arguments, Failed, Trial};

/// A binary's shared context, as registered tests receive it before [`downcast`].
pub type Erased = Arc<dyn Any + Send + Sync>;

type TestFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One test function, registered by `register_test!`.
pub struct Test {
    module: &'static str,
    function: &'static str,
    order: u32,
    run: fn(Erased) -> TestFuture,
}

inventory::collect!(Test);

impl Test {
    pub const fn new(module: &'static str, function: &'static str, order: u32, run: fn(Erased) -> TestFuture) -> Test {
        Test { module, function, order, run }
    }

    /// `module::function`: the module path without the binary's own name.
    fn name(&self) -> String {
        match self.module.split_once("::") {
            Some((_, module)) => format!("{module}::{}", self.function),
            None => self.function.to_string(),
        }
    }
}

/// `register_test!(ORDER, name);` just above `async fn name(context: Arc<Context>)` registers it
/// as a test of this binary; ORDER is its place in the run order. A test function that is not
/// registered is never used, which the dead-code lint reports.
#[macro_export]
macro_rules! register_test {
    ($order:literal, $function:ident) => {
        ::inventory::submit! {
            $crate::support::harness::Test::new(module_path!(), stringify!($function), $order, |context| {
                Box::pin($function($crate::support::harness::downcast(context)))
            })
        }
    };
}

/// The shared context as the test's function takes it.
pub fn downcast<C: Send + Sync + 'static>(context: Erased) -> Arc<C> {
    context
        .downcast()
        .unwrap_or_else(|_| panic!("the test takes an Arc<{}>, which is not what this binary sets up", std::any::type_name::<C>()))
}

/// Runs this binary's registered tests as `cargo test` would. `setup` makes the context they
/// share, once, when the first test runs; `on_failure` prints diagnostics after a test fails;
/// `teardown` runs after the last test, if `setup` ran.
pub fn run<C, S, F>(setup: S, on_failure: fn(&C), teardown: fn(&C)) -> ExitCode
where
    C: Send + Sync + 'static,
    S: Fn() -> F + Copy + Send + Sync + 'static,
    F: Future<Output = C> + Send + 'static,
{
    let mut arguments = Arguments::from_args();
    arguments.test_threads.get_or_insert(1);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let shared = Arc::new(Shared { runtime, setup, context: OnceLock::new(), on_failure });
    let trials = in_order()
        .into_iter()
        .map(|test| {
            let shared = shared.clone();
            Trial::test(test.name(), move || shared.run(test))
        })
        .collect();
    let conclusion = libtest_mimic::run(&arguments, trials);
    if let Some(Ok(context)) = shared.context.get() {
        teardown(context);
    }
    conclusion.exit_code()
}

/// The registered tests by their numbers; two with one number are refused, so the order is
/// never left to the linker.
fn in_order() -> Vec<&'static Test> {
    let mut tests: Vec<&'static Test> = inventory::iter::<Test>.into_iter().collect();
    tests.sort_by_key(|test| test.order);
    for pair in tests.windows(2) {
        assert_ne!(pair[0].order, pair[1].order, "{} and {} are registered with the same number", pair[0].name(), pair[1].name());
    }
    tests
}

struct Shared<C, S> {
    // First, so that dropping it ends the tasks a test left behind before the context goes.
    runtime: tokio::runtime::Runtime,
    setup: S,
    context: OnceLock<Result<Arc<C>, String>>,
    on_failure: fn(&C),
}

impl<C, S, F> Shared<C, S>
where
    C: Send + Sync + 'static,
    S: Fn() -> F + Copy + Send + 'static,
    F: Future<Output = C> + Send + 'static,
{
    /// Runs one test in its own task, so that its panic fails it alone.
    fn run(&self, test: &Test) -> Result<(), Failed> {
        let context = self.context.get_or_init(|| {
            // Called inside the task too, so that a panic before its first await is caught.
            let setup = self.setup;
            let started = self.runtime.block_on(self.runtime.spawn(async move { setup().await }));
            started.map(Arc::new).map_err(panic_message)
        });
        let context = context.as_ref().map_err(|message| format!("the shared setup failed: {message}"))?;
        let started = Instant::now();
        match self.runtime.block_on(self.runtime.spawn((test.run)(context.clone()))) {
            Ok(()) => Ok(()),
            Err(error) => {
                (self.on_failure)(context);
                Err(format!("{} (after {:.1}s)", panic_message(error), started.elapsed().as_secs_f64()).into())
            }
        }
    }
}

fn panic_message(error: tokio::task::JoinError) -> String {
    if !error.is_panic() {
        return error.to_string();
    }
    let payload = error.into_panic();
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => payload.downcast_ref::<&str>().map_or_else(|| "panicked".to_string(), |message| message.to_string()),
    }
}
