//! hyper's runtime traits (`Read`, `Write`, `Executor`, `Timer`) for IX streams.
//! Not built yet: it arrives with the hyper issue (#6); this crate exports nothing
//! until then.
