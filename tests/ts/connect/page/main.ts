// The page of connect.test.ts: it puts the scenarios where the test's
// page.evaluate calls them, and says so.

import { scenarios } from "./scenarios.js";

window.connectScenarios = scenarios;
document.getElementById("status")!.textContent = "ready";
