#!/usr/bin/env node
// Validates dnsgate event lines with the official CloudEvents SDK.
//
//   node validate_events.js FILE [FILE...]   (or lines on stdin when no FILE)
//
// Every non-empty line must be one JSON object that the SDK accepts in strict
// mode (`new CloudEvent(obj, true)`). The SDK fills in a missing id, time and
// specversion by itself, so their presence is checked on the raw object
// first. Exits 1 and names the line on the first problem of each line.
"use strict";

const fs = require("fs");
const path = require("path");
const { CloudEvent } = require(path.join(__dirname, "node_modules", "cloudevents"));

const REQUIRED = ["specversion", "id", "source", "type"];

function checkLine(line) {
  let obj;
  try {
    obj = JSON.parse(line);
  } catch (e) {
    return `not JSON: ${e.message}`;
  }
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) {
    return "not a JSON object";
  }
  for (const key of REQUIRED) {
    if (typeof obj[key] !== "string" || obj[key] === "") {
      return `required attribute "${key}" missing or not a non-empty string`;
    }
  }
  if (obj.specversion !== "1.0") {
    return `specversion is ${JSON.stringify(obj.specversion)}, expected "1.0"`;
  }
  if ("time" in obj && typeof obj.time !== "string") {
    return "time is not a string";
  }
  try {
    new CloudEvent(obj, true);
  } catch (e) {
    const detail = e.errors ? ` ${JSON.stringify(e.errors)}` : "";
    return `rejected by the CloudEvents SDK: ${e.message}${detail}`;
  }
  return null;
}

function checkText(name, text) {
  let bad = 0;
  let good = 0;
  const lines = text.split("\n");
  lines.forEach((line, i) => {
    if (line === "") return;
    const problem = checkLine(line);
    if (problem) {
      bad += 1;
      console.log(`${name}:${i + 1}: ${problem}\n  ${line}`);
    } else {
      good += 1;
    }
  });
  console.error(`${name}: ${good} valid, ${bad} invalid`);
  return bad;
}

function main() {
  const files = process.argv.slice(2);
  let bad = 0;
  if (files.length === 0) {
    bad += checkText("<stdin>", fs.readFileSync(0, "utf8"));
  } else {
    for (const f of files) bad += checkText(f, fs.readFileSync(f, "utf8"));
  }
  process.exit(bad === 0 ? 0 : 1);
}

main();
