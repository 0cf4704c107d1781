#!/usr/bin/env -S node --import tsx
import { run } from "../../internal/cli/run.js";

run(process.argv.slice(2));
