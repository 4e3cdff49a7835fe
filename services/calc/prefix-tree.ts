// The tree shape lives in util/ (pure, shared with the driver's bridge-port
// guard, DESIGN §6.3); calc keeps importing it from here.
export * from "../util/prefix-tree.js";
