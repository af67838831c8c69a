// Package core holds the types shared by the root invoker package and the
// transports (Request, Result, Invoker, the typed errors and their classes).
// The root package re-exports them as aliases; users import the root package,
// never this one.
package core
