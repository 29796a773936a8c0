//! The controller: observe through the adapters, call the engine, apply its plan, write status.
