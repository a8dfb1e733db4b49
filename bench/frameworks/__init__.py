"""The framework adapters' part: what reporting an OpenAI Agents SDK or LangChain run to runwatch
costs the agent's process, beside what the framework itself spends on the same scripted run."""
