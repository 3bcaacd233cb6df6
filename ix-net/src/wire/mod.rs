//! Wire formats: views over header bytes that validate lengths once, and logical
//! representations that parse and emit them.
