import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ConfigError, parseConfig } from '../../../src/config/load.js'
import { kafkaPlugin } from '../../../plugins/kafka/plugin.js'

const plugins = [kafkaPlugin]

function problems (yaml: string): string {
  try {
    parseConfig(yaml, { plugins, env: {} })
  } catch (err) {
    if (err instanceof ConfigError) return err.message
    throw err
  }
  return ''
}

describe('kafka section: the produce bound ends before the hook gives up', () => {
  it('defaults: produceTimeoutMs 4000 below hooks.timeoutMs 5000', () => {
    const config = parseConfig('kafka: { brokers: ["127.0.0.1:9092"] }', { plugins, env: {} })
    assert.equal((config.kafka as { produceTimeoutMs: number }).produceTimeoutMs, 4000)
    assert.equal(config.hooks.timeoutMs, 5000)
  })

  it('produceTimeoutMs at or above hooks.timeoutMs is a configuration error naming both keys', () => {
    assert.match(problems('kafka: { brokers: ["k:9092"], produceTimeoutMs: 5000 }'), /kafka\.produceTimeoutMs: 5000 ms must be below hooks\.timeoutMs \(5000 ms\)/)
    assert.match(problems('hooks: { timeoutMs: 2000 }\nkafka: { brokers: ["k:9092"] }'), /kafka\.produceTimeoutMs: 4000 ms must be below hooks\.timeoutMs \(2000 ms\)/)
  })

  it('a longer hook bound allows a longer produce bound', () => {
    assert.equal(problems('hooks: { timeoutMs: 12000 }\nkafka: { brokers: ["k:9092"], produceTimeoutMs: 10000 }'), '')
  })
})

describe('kafka section: commitIntervalMs', () => {
  it('defaults to 100 ms; 0 commits after every delivered batch; a negative or non-integer value is refused by name', () => {
    const config = parseConfig('kafka: { brokers: ["127.0.0.1:9092"] }', { plugins, env: {} })
    assert.equal((config.kafka as { commitIntervalMs: number }).commitIntervalMs, 100)
    assert.equal(problems('kafka: { brokers: ["k:9092"], commitIntervalMs: 0 }'), '')
    assert.match(problems('kafka: { brokers: ["k:9092"], commitIntervalMs: -1 }'), /kafka\.commitIntervalMs/)
    assert.match(problems('kafka: { brokers: ["k:9092"], commitIntervalMs: 1.5 }'), /kafka\.commitIntervalMs/)
  })
})

describe('kafka section: produceLingerMs', () => {
  it('defaults to 0 (no linger); 2 ms is accepted with or without a fetch pause; above 50 ms, negative or not a whole number is refused by name', () => {
    const config = parseConfig('kafka: { brokers: ["127.0.0.1:9092"] }', { plugins, env: {} })
    assert.equal((config.kafka as { produceLingerMs: number }).produceLingerMs, 0)
    assert.equal(problems('kafka: { brokers: ["k:9092"], produceLingerMs: 2, fetchPauseMs: 0 }'), '')
    assert.equal(problems('kafka: { brokers: ["k:9092"], produceLingerMs: 2 }'), '', 'beside the default fetch pause')
    assert.equal(problems('kafka: { brokers: ["k:9092"], produceLingerMs: 50, fetchPauseMs: 50 }'), '')
    assert.match(problems('kafka: { brokers: ["k:9092"], produceLingerMs: -1 }'), /kafka\.produceLingerMs/)
    assert.match(problems('kafka: { brokers: ["k:9092"], produceLingerMs: 51 }'), /kafka\.produceLingerMs/)
    assert.match(problems('kafka: { brokers: ["k:9092"], produceLingerMs: 0.5 }'), /kafka\.produceLingerMs/)
  })
})

describe('kafka section: fetchPauseMs', () => {
  it('defaults to 2; 0 and 50 are accepted; above 50 ms, negative or not a whole number is refused by name', () => {
    const config = parseConfig('kafka: { brokers: ["127.0.0.1:9092"] }', { plugins, env: {} })
    assert.equal((config.kafka as { fetchPauseMs: number }).fetchPauseMs, 0)
    assert.equal(problems('kafka: { brokers: ["k:9092"], fetchPauseMs: 0 }'), '')
    assert.equal(problems('kafka: { brokers: ["k:9092"], fetchPauseMs: 50 }'), '')
    assert.match(problems('kafka: { brokers: ["k:9092"], fetchPauseMs: 51 }'), /kafka\.fetchPauseMs/)
    assert.match(problems('kafka: { brokers: ["k:9092"], fetchPauseMs: -1 }'), /kafka\.fetchPauseMs/)
    assert.match(problems('kafka: { brokers: ["k:9092"], fetchPauseMs: 1.5 }'), /kafka\.fetchPauseMs/)
  })
})
